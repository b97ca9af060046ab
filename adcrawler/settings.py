"""Scrapy settings for adcrawler.

Every tunable is read from the environment or ``.env`` through python-decouple
(``.env.example`` lists them with demo values) and can be overridden per run
with ``scrapy crawl campaigns -s NAME=value``. Secrets are *not* settings:
credentials are read from the environment only when a token is requested, so
they never appear in Scrapy's "Overridden settings" log line or a stats dump.
"""

from decouple import Csv, config

BOT_NAME = "adcrawler"
SPIDER_MODULES = ["adcrawler.spiders"]
NEWSPIDER_MODULE = "adcrawler.spiders"
COMMANDS_MODULE = "adcrawler.commands"

# -- The platform ------------------------------------------------------
ADCRAWLER_API_URL = config("AD_PLATFORM_API_URL", default="http://127.0.0.1:3001")
# Slug -> client id and credential variable names (see adcrawler/clients.py);
# empty = the registry shipped in the package (adcrawler/clients.toml).
ADCRAWLER_CLIENTS_FILE = config("ADCRAWLER_CLIENTS_FILE", default="")
# Largest page the platform allows; the platform may cap it further.
ADCRAWLER_PAGE_SIZE = config("ADCRAWLER_PAGE_SIZE", default=100, cast=int)

# -- Rate budget (per client) -------------------------------------------
# The platform's limit: ADCRAWLER_RATE_LIMIT requests per rolling ADCRAWLER_RATE_WINDOW seconds.
ADCRAWLER_RATE_LIMIT = config("ADCRAWLER_RATE_LIMIT", default=10, cast=int)
ADCRAWLER_RATE_WINDOW = config("ADCRAWLER_RATE_WINDOW", default=60.0, cast=float)
# How often one request may meet a 429 before it is given up.
ADCRAWLER_RATE_429_RETRIES = config("ADCRAWLER_RATE_429_RETRIES", default=5, cast=int)
# Longest Retry-After we honour; larger values are clamped to it.
ADCRAWLER_RETRY_AFTER_MAX = config("ADCRAWLER_RETRY_AFTER_MAX", default=300.0, cast=float)

# -- Retries ------------------------------------------------------------
RETRY_TIMES = config("ADCRAWLER_RETRY_TIMES", default=6, cast=int)
ADCRAWLER_RETRY_HTTP_CODES = config("ADCRAWLER_RETRY_HTTP_CODES", default="500,502,503,504,408,522,524",
                                    cast=Csv(int))
# Backoff before attempt n: uniform in [c/2, c], c = min(MAX, BASE * 2**(n-1)) seconds.
ADCRAWLER_RETRY_BACKOFF_BASE = config("ADCRAWLER_RETRY_BACKOFF_BASE", default=1.0, cast=float)
ADCRAWLER_RETRY_BACKOFF_MAX = config("ADCRAWLER_RETRY_BACKOFF_MAX", default=30.0, cast=float)

# -- Timeouts (seconds); a request that hangs is abandoned and retried ---
DOWNLOAD_TIMEOUT = config("ADCRAWLER_TIMEOUT", default=30.0, cast=float)
ADCRAWLER_TIMEOUT_AUTH = config("ADCRAWLER_TIMEOUT_AUTH", default=10.0, cast=float)
ADCRAWLER_TIMEOUT_LIST = config("ADCRAWLER_TIMEOUT_LIST", default=15.0, cast=float)
# The sync call takes about 2 s on the platform.
ADCRAWLER_TIMEOUT_SYNC = config("ADCRAWLER_TIMEOUT_SYNC", default=10.0, cast=float)

# -- Token --------------------------------------------------------------
# Refresh a token this many seconds before it expires (at most a tenth of its life).
ADCRAWLER_TOKEN_REFRESH_MARGIN = config("ADCRAWLER_TOKEN_REFRESH_MARGIN", default=60.0, cast=float)

# -- Storage ------------------------------------------------------------
# Unset: SQLite at ADCRAWLER_SQLITE_PATH. postgresql://... : PostgreSQL.
DATABASE_URL = config("DATABASE_URL", default="")
ADCRAWLER_SQLITE_PATH = config("ADCRAWLER_SQLITE_PATH", default="data/adcrawler.sqlite3")
ADCRAWLER_DB_BATCH_SIZE = config("ADCRAWLER_DB_BATCH_SIZE", default=50, cast=int)
ADCRAWLER_DB_FLUSH_INTERVAL = config("ADCRAWLER_DB_FLUSH_INTERVAL", default=5.0, cast=float)
ADCRAWLER_DB_RETRIES = config("ADCRAWLER_DB_RETRIES", default=5, cast=int)
# Backoff between batch retries; the database's clock is not the platform's.
ADCRAWLER_DB_RETRY_BACKOFF_BASE = config("ADCRAWLER_DB_RETRY_BACKOFF_BASE", default=1.0, cast=float)
ADCRAWLER_DB_RETRY_BACKOFF_MAX = config("ADCRAWLER_DB_RETRY_BACKOFF_MAX", default=30.0, cast=float)
ADCRAWLER_SPOOL_DIR = config("ADCRAWLER_SPOOL_DIR", default="data/spool")

# -- Operating ------------------------------------------------------------
# One JSON stats file per run lands here; empty = off.
ADCRAWLER_STATS_DIR = config("ADCRAWLER_STATS_DIR", default="data/stats")
# Prometheus pull endpoint (port 0 = off) and Pushgateway push at close (empty = off).
ADCRAWLER_METRICS_HOST = config("ADCRAWLER_METRICS_HOST", default="127.0.0.1")
ADCRAWLER_METRICS_PORT = config("ADCRAWLER_METRICS_PORT", default=0, cast=int)
ADCRAWLER_PUSHGATEWAY_URL = config("ADCRAWLER_PUSHGATEWAY_URL", default="")
ADCRAWLER_PUSHGATEWAY_JOB = config("ADCRAWLER_PUSHGATEWAY_JOB", default="adcrawler")
# A progress line per client every this many seconds (0 = off).
ADCRAWLER_PROGRESS_INTERVAL = config("ADCRAWLER_PROGRESS_INTERVAL", default=30.0, cast=float)
# One JSON object per log line (for log shippers) instead of text.
ADCRAWLER_LOG_JSON = config("ADCRAWLER_LOG_JSON", default=False, cast=bool)

# -- Concurrency --------------------------------------------------------
# The rate budget, not concurrency, limits a client. Requests waiting for
# budget count as active, so allow many: they cost a coroutine each.
CONCURRENT_REQUESTS = config("ADCRAWLER_CONCURRENT_REQUESTS", default=512, cast=int)
# Per client (each client has its own download slot).
CONCURRENT_REQUESTS_PER_DOMAIN = config("ADCRAWLER_CONCURRENT_PER_CLIENT", default=16, cast=int)
DOWNLOAD_DELAY = 0
# AutoThrottle may only slow a client down: the budget middleware holds the line.
AUTOTHROTTLE_ENABLED = config("ADCRAWLER_AUTOTHROTTLE", default=True, cast=bool)
AUTOTHROTTLE_START_DELAY = config("ADCRAWLER_AUTOTHROTTLE_START_DELAY", default=1.0, cast=float)
AUTOTHROTTLE_MAX_DELAY = config("ADCRAWLER_AUTOTHROTTLE_MAX_DELAY", default=10.0, cast=float)
AUTOTHROTTLE_TARGET_CONCURRENCY = config("ADCRAWLER_AUTOTHROTTLE_TARGET_CONCURRENCY", default=4.0, cast=float)

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "adcrawler.middlewares.retry.BackoffRetryMiddleware": 550,
    "adcrawler.middlewares.ratebudget.RateBudgetMiddleware": 900,
    # Last before the downloader: the token is attached after the budget wait.
    "adcrawler.middlewares.auth.BearerTokenMiddleware": 950,
    # Moved next to the downloader so it counts every response, 429s included.
    "scrapy.downloadermiddlewares.stats.DownloaderStats": 990,
}
ITEM_PIPELINES = {"adcrawler.pipelines.store.StorePipeline": 300}
EXTENSIONS = {
    "adcrawler.extensions.logs.LogOutput": -1000,
    "adcrawler.extensions.traffic.TrafficStats": 500,
    "adcrawler.extensions.statsdump.StatsDump": 500,
    "adcrawler.extensions.metrics.PrometheusMetrics": 500,
    "adcrawler.extensions.progress.Progress": 500,
    # Remote control and telnet would expose the running crawler: keep them off.
    "scrapy.extensions.remote_control.RemoteControl": None,
    "scrapy.extensions.telnet.TelnetConsole": None,
}
REMOTE_CONTROL_ENABLED = False
TELNETCONSOLE_ENABLED = False

# A resumed run (JOBDIR) relies on the database, not on a persisted request
# queue: see adcrawler/jobdir.py.
SCHEDULER = "adcrawler.jobdir.ResumeScheduler"
DUPEFILTER_CLASS = "adcrawler.jobdir.ResumeDupeFilter"
# Sync calls of two clients differ only by X-Client-ID: keep both.
REQUEST_FINGERPRINTER_CLASS = "adcrawler.fingerprint.ClientAwareFingerprinter"
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
USER_AGENT = "adcrawler/1.0"
LOG_LEVEL = config("ADCRAWLER_LOG_LEVEL", default="INFO")
LOGSTATS_INTERVAL = config("ADCRAWLER_LOGSTATS_INTERVAL", default=60.0, cast=float)
FEED_EXPORT_ENCODING = "utf-8"
