"""Scrapy settings for adcrawler: our settings (adcrawler.config) read from the environment or
``.env``, then the project's fixed Scrapy configuration. Credentials are not settings: they are
read from the environment only when a token is requested."""

from decouple import config

from adcrawler.config import environment_values

globals().update(environment_values())

BOT_NAME = "adcrawler"
SPIDER_MODULES = ["adcrawler.spiders"]
NEWSPIDER_MODULE = "adcrawler.spiders"
# Our commands check the settings first, and crawl's exit status tells the truth.
COMMANDS_MODULE = "adcrawler.commands"

# Scrapy's own names, also from the environment or .env (checked like ours: adcrawler.config.SCRAPY).
LOG_LEVEL = config("LOG_LEVEL", default="INFO")
# Requests on the wire, all clients together: those waiting for their budget do not count.
CONCURRENT_REQUESTS = config("CONCURRENT_REQUESTS", default="1024")
CONCURRENT_REQUESTS_PER_DOMAIN = 16  # per client: each has a download slot of its own

# The budget-aware scheduler holds each client's requests until its rate budget admits
# them, so the downloader only ever holds requests on the wire.
SCHEDULER = "adcrawler.scheduler.BudgetScheduler"
DOWNLOADER_MIDDLEWARES = {
    # Replaced: every answer is judged once, by adcrawler.retry.
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    # Replaced: the same redirects, without a warning about Referer headers on every run.
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "adcrawler.auth.RedirectMiddleware": 600,
    # Both below HttpCompressionMiddleware (590): they read decompressed bodies.
    "adcrawler.retry.RetryMiddleware": 560,
    "adcrawler.auth.BearerTokenMiddleware": 570,
}
# A JSON API sends no <meta http-equiv="refresh">: do not look for one in every body.
METAREFRESH_ENABLED = False
# Spider middlewares that do nothing for this crawl (no referers, no link depth, no long
# URLs) but wrap every callback's output: off, for CPU.
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.referer.RefererMiddleware": None,
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
}
ITEM_PIPELINES = {"adcrawler.pipelines.StorePipeline": 300}
EXTENSIONS = {
    # spider_closed handlers run in this order (after the spider's): the ledger settles
    # outcomes, the recorder writes them, then the stats file, then the push.
    "adcrawler.ledger.RunLedger": 0,
    "adcrawler.store.Database": 50,
    "adcrawler.extensions.recorder.RunRecorder": 100,
    "adcrawler.extensions.statsdump.StatsDump": 510,
    "adcrawler.extensions.metrics.PrometheusMetrics": 520,
    "adcrawler.extensions.progress.ProgressLog": 530,
    # Our progress line says what Scrapy's "Crawled N pages" would, in the job's terms.
    "scrapy.extensions.logstats.LogStats": None,
    # Remote control and telnet would expose the running crawler; the job directory holds
    # only our own JSON files, not a pickled spider state.
    "scrapy.extensions.remote_control.RemoteControl": None,
    "scrapy.extensions.telnet.TelnetConsole": None,
    "scrapy.extensions.spiderstate.SpiderState": None,
}
REMOTE_CONTROL_ENABLED = False
TELNETCONSOLE_ENABLED = False

DOWNLOAD_DELAY = 0
# The rate budget paces each client; AutoThrottle's latency loop would pace them again.
AUTOTHROTTLE_ENABLED = False
# A response yields one item or a page of requests: process them in order (a hundred
# parallel tasks per response, Scrapy's default, only cost CPU).
CONCURRENT_ITEMS = 1
# Scrapy re-reads each callback's source to warn about generators that return values;
# ours do not, and the check costs CPU on every response.
WARN_ON_GENERATOR_RETURN_VALUE = False
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
USER_AGENT = "adcrawler/1.0"
FEED_EXPORT_ENCODING = "utf-8"
