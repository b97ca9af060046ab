"""Scrapy settings for adcrawler.

Our own settings (see :mod:`adcrawler.config`) come from the environment or
``.env`` through python-decouple, as text, under the names the README lists;
``-s NAME=value`` overrides any of them for one run, and the project's commands
check them all before anything starts. Secrets are *not* settings: credentials
are read from the environment only when a token is requested.

Below them, the fixed Scrapy configuration of the project.
"""

from adcrawler.config import environment_values

globals().update(environment_values())

BOT_NAME = "adcrawler"
SPIDER_MODULES = ["adcrawler.spiders"]
NEWSPIDER_MODULE = "adcrawler.spiders"
# Our crawl command sets the exit status and checks the settings first.
COMMANDS_MODULE = "adcrawler.commands"

# The budget-aware scheduler holds each client's requests until its rate
# budget admits them, so the downloader only ever holds requests on the wire.
SCHEDULER = "adcrawler.scheduler.BudgetScheduler"

DOWNLOADER_MIDDLEWARES = {
    # Replaced: every answer is judged once, in adcrawler.answers.
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    # Replaced: the same redirects, without a warning about Referer headers on every run.
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "adcrawler.middlewares.redirect.RedirectMiddleware": 600,
    # Both below HttpCompressionMiddleware (590): they read decompressed bodies.
    "adcrawler.middlewares.retry.RetryMiddleware": 560,
    "adcrawler.middlewares.auth.BearerTokenMiddleware": 570,
}
# A JSON API sends no <meta http-equiv="refresh">: do not look for one in every body.
METAREFRESH_ENABLED = False
# Spider middlewares that wrap every callback's output and do nothing for this
# crawl (no referers, no link depth, no long URLs, one platform host): off, for CPU.
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.referer.RefererMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
}
ITEM_PIPELINES = {"adcrawler.pipelines.store.StorePipeline": 300}
EXTENSIONS = {
    # spider_closed handlers run in this order (after the spider's): the ledger
    # settles outcomes, the run records write them, then the stats file, then the push.
    "adcrawler.ledger.RunLedger": 0,
    "adcrawler.extensions.runs.RunRecords": 100,
    "adcrawler.extensions.traffic.TrafficStats": 500,
    "adcrawler.extensions.statsdump.StatsDump": 510,
    "adcrawler.extensions.metrics.PrometheusMetrics": 520,
    "adcrawler.extensions.progress.Progress": 530,
    # Our progress line says what Scrapy's "Crawled N pages" would, in the job's terms.
    "scrapy.extensions.logstats.LogStats": None,
    # Remote control and telnet would expose the running crawler; the job
    # directory holds only our own JSON files, not a pickled spider state.
    "scrapy.extensions.remote_control.RemoteControl": None,
    "scrapy.extensions.telnet.TelnetConsole": None,
    "scrapy.extensions.spiderstate.SpiderState": None,
}
REMOTE_CONTROL_ENABLED = False
TELNETCONSOLE_ENABLED = False

DOWNLOAD_DELAY = 0
AUTOTHROTTLE_ENABLED = False  # the rate budget paces each client
# A response yields one item or a page of requests: process them in order
# (a hundred parallel tasks per response, Scrapy's default, only cost CPU).
CONCURRENT_ITEMS = 1
# Scrapy re-reads each callback's source to warn about generators that return
# values; ours do not, and the check costs CPU on every response.
WARN_ON_GENERATOR_RETURN_VALUE = False
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
USER_AGENT = "adcrawler/1.0"
FEED_EXPORT_ENCODING = "utf-8"
