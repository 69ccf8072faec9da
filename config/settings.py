"""The one settings module: every value that differs between machines comes from the environment."""

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import values as _metrics_values

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-change-me")
# Old keys after a rotation: emailed links still work, and erased bounced addresses are still recognised.
SECRET_KEY_FALLBACKS = [key.strip() for key in env.list("SECRET_KEY_FALLBACKS", default=[])]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

# Served over HTTPS (the public URL says so): cookies, redirects and HSTS follow.
HTTPS = SITE_URL.startswith("https://")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=HTTPS)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# The proxies in front, by address or network: a request from one of them has its X-Forwarded-For
# (the client's address, for rate limits and /metrics), -Proto and -Host believed; from anyone else
# those headers are dropped (config.proxy). None named, none are believed.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# The count of proxies this replaced trusted whoever reached the app directly: still set, check proxy.E001
# stops the site rather than guess.
TRUSTED_PROXY = env.str("TRUSTED_PROXY", default="")
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_celery_beat",
    "anymail",
    "csp",
    "questions",
    "alerts",
]

MIDDLEWARE = [
    # Outermost: every line logged for a request carries its id, and every response is counted, whatever
    # answers it.
    "config.middleware.RequestIdMiddleware",
    "config.middleware.RequestMetricsMiddleware",
    # Before anything else: nothing may read a forwarded header that no trusted proxy wrote.
    "config.proxy.ForwardedHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the address: NUL, control characters and broken UTF-8 are a 400, not a 500.
    "questions.middleware.RefuseBadAddressesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            "builtins": ["config.limits"],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Search counts are capped and cheap; JIT compiling them costs more than it saves.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, worker and beat share one file: wait for a lock rather than fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Public searches, previews and feeds (questions/budget.py, questions/allowance.py): each request's database
# work stops after SEARCH_BUDGET_SECONDS and says the search is too broad to run; each client may spend
# SEARCH_ALLOWANCE_SECONDS a window on searches, counting only the time each took beyond SEARCH_FREE_SECONDS.
SEARCH_BUDGET_SECONDS = env.float("SEARCH_BUDGET_SECONDS", default=1.2)
SEARCH_FREE_SECONDS = env.float("SEARCH_FREE_SECONDS", default=0.3)
SEARCH_ALLOWANCE_SECONDS = env.float("SEARCH_ALLOWANCE_SECONDS", default=4.0)
SEARCH_ALLOWANCE_WINDOW_SECONDS = env.int("SEARCH_ALLOWANCE_WINDOW_SECONDS", default=60)
# A search asking for more than SEARCH_HEAVY_WEIGHT substring tests of a column (a word in the six default
# fields is 6; people's searches rarely pass ten words), or from a client that has spent a quarter of its allowance,
# waits for nothing: it runs in one of SEARCH_HEAVY_AT_ONCE lanes for the whole site, or is refused until one
# is free.
SEARCH_HEAVY_WEIGHT = env.int("SEARCH_HEAVY_WEIGHT", default=60)
SEARCH_HEAVY_AT_ONCE = env.int("SEARCH_HEAVY_AT_ONCE", default=1)


def _next_database(redis_url: str) -> str:
    """The same Redis server, one database number up."""
    parts = urlsplit(redis_url)
    number = parts.path.strip("/") or "0"
    if parts.scheme not in ("redis", "rediss") or not number.isdigit() or int(number) >= 15:
        raise ImproperlyConfigured(f"Set REDIS_CACHE_URL: no Redis database follows the broker's in {redis_url}")
    return urlunsplit(parts._replace(path=f"/{int(number) + 1}"))


REDIS_URL = env.str("REDIS_URL", default="")
# The broker and the cache live in Redis databases of their own (the cache one up from the broker's,
# unless set apart): clearing the cache must never empty the task queue.
REDIS_CACHE_URL = env.str("REDIS_CACHE_URL", default="") or (_next_database(REDIS_URL) if REDIS_URL else "")
# A Redis that accepts connections and never answers (a hung server, a half-open connection) must cost a
# request seconds, not a worker for ever: every connection to it, cache or broker, gives up after this long.
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=1.0)
if REDIS_CACHE_URL:
    # Pages then do without the cache.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_CACHE_URL,
                          "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}}}
else:
    # Room for a flood's worth of rate-limit counters: culling would forget the ones that matter.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache",
                          "OPTIONS": {"MAX_ENTRIES": 200_000}}}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="Europe/London")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the source folders too, so a checkout works without collectstatic.
WHITENOISE_USE_FINDERS = True

# Celery: Redis when there is one; otherwise kombu's filesystem transport, which needs no server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
if CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("in", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange bindings; kombu's default is a folder in whatever directory the process started in.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT
# A form hands its work to the broker while the person waits: one more try, then "try again in a minute"
# (Celery's default tries four times, each waiting out the time-out).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                    "interval_max": 0.2}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Needed only for sharded matching (MATCH_SHARDS > 1), whose chords collect the shards' results.
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Workers and beat log through LOGGING above, as the web server does, rather than Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Email: written to files out of the box; an Anymail ESP in production.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "outbox"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Written question alerts <alerts@localhost>")
# Every ANYMAIL_<NAME> variable (ESP keys, WEBHOOK_SECRET, ...) becomes ANYMAIL["<NAME>"].
ANYMAIL = {key.removeprefix("ANYMAIL_"): value for key, value in env.ENVIRON.items() if key.startswith("ANYMAIL_")}
# Anymail's settings that are not text (a time-out given as "5" would be refused as a string).
for _name, _read in {"REQUESTS_TIMEOUT": env.float, "IGNORE_RECIPIENT_STATUS": env.bool,
                     "IGNORE_UNSUPPORTED_FEATURES": env.bool, "DEBUG_API_REQUESTS": env.bool,
                     "POSTMARK_USE_BULK_API": env.bool}.items():
    if _name in ANYMAIL:
        ANYMAIL[_name] = _read(f"ANYMAIL_{_name}")
# Within the sender's lease (DELIVERY_LEASE_SECONDS), however slow the ESP: connecting, then answering.
ANYMAIL.setdefault("REQUESTS_TIMEOUT", (10.0, 20.0))

# Sources.
PARLIAMENT_API_URL = env.str("PARLIAMENT_API_URL", default="https://questions-statements-api.parliament.uk").rstrip("/")
POLL_INTERVAL_MINUTES = env.int("POLL_INTERVAL_MINUTES", default=5)
SOURCE_REQUESTS_PER_SECOND = env.float("SOURCE_REQUESTS_PER_SECOND", default=5.0)
SOURCE_CONNECT_TIMEOUT = env.float("SOURCE_CONNECT_TIMEOUT", default=10.0)
SOURCE_READ_TIMEOUT = env.float("SOURCE_READ_TIMEOUT", default=30.0)
SOURCE_MAX_BYTES = env.int("SOURCE_MAX_BYTES", default=20 * 1024 * 1024)
SOURCE_MAX_RETRIES = env.int("SOURCE_MAX_RETRIES", default=4)
SOURCE_BACKOFF_SECONDS = env.float("SOURCE_BACKOFF_SECONDS", default=2.0)
SOURCE_MAX_RETRY_AFTER = env.float("SOURCE_MAX_RETRY_AFTER", default=120.0)
# Wall-clock budgets: for one response to arrive in full, and for a whole poll of one source.
SOURCE_RESPONSE_SECONDS = env.float("SOURCE_RESPONSE_SECONDS", default=60.0)
SOURCE_POLL_SECONDS = env.float("SOURCE_POLL_SECONDS", default=240.0)
# The API's dates are whole days: look back this far behind the cursor so nothing on the boundary is missed.
PARLIAMENT_API_OVERLAP_DAYS = env.int("PARLIAMENT_API_OVERLAP_DAYS", default=1)
PARLIAMENT_API_PAGE_SIZE = env.int("PARLIAMENT_API_PAGE_SIZE", default=100)
# Pages read for one day and one date filter, whatever the API says its total is.
PARLIAMENT_API_MAX_PAGES = env.int("PARLIAMENT_API_MAX_PAGES", default=50)
PARLIAMENT_API_FIRST_POLL_DAYS = env.int("PARLIAMENT_API_FIRST_POLL_DAYS", default=7)

# One JSON object per line (LOG_FORMAT=json, the default), each event's ids and counts as fields of
# their own; LOG_FORMAT=plain is for reading by eye.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # "time" is ISO 8601 in UTC, whatever the site's time zone: no hour is ambiguous in October.
        "json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": ["levelname", "name", "message"],
                 "rename_fields": {"levelname": "level", "name": "logger"}, "timestamp": "time",
                 "json_ensure_ascii": False},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # The tokens of emailed links are taken out of every line (a 404 on a link logs its path); each line
    # written for a web request, or a task it queued, names the request (config.observability).
    "filters": {"redact_tokens": {"()": "config.redact.RedactTokens"},
                "request_id": {"()": "config.observability.RequestIdFilter"},
                "quiet_ticks": {"()": "config.celery.QuietTicks"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["request_id", "redact_tokens"],
                             "formatter": "plain" if LOG_FORMAT == "plain" else "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # A worker's lines about beat's frequent ticks are DEBUG lines when the tick found nothing to do.
        "celery.worker.strategy": {"filters": ["quiet_ticks"]},
        "celery.app.trace": {"filters": ["quiet_ticks"]},
        # Beat says "Sending due task" at INFO for every entry it sends, several times a minute.
        **({} if LOG_LEVEL == "DEBUG" else {"celery.beat": {"level": "WARNING"}}),
    },
}

# Prometheus metrics at /metrics, served only to a bearer of METRICS_TOKEN or to an address in
# METRICS_ALLOWED_IPS (addresses or networks); neither set, the page does not exist. Every process of the
# service (web, workers) counts into files in one folder, which the page adds up: on more than one
# host or container, that folder is a volume they share.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
METRICS_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics")))
METRICS_DIR.mkdir(parents=True, exist_ok=True)
# Read by prometheus_client when it is first imported, which no module does before settings are loaded.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
# Each process's files are named for it. Containers sharing the folder each number their processes from 1,
# so the host's name goes in too: two processes writing one file would corrupt it. `ValueClass` is not part of
# prometheus_client's public API (its version is pinned in requirements.txt; tests/test_metrics.py checks it).
_metrics_values.ValueClass = _metrics_values.MultiProcessValue(
    lambda: f"{socket.gethostname().replace('_', '-')}-{os.getpid()}")

# The end-to-end canary (alerts/canary.py): off unless CANARY_EMAIL names a mailbox the operator owns or
# the ESP's test sink. Every CANARY_INTERVAL_MINUTES a question is stored and answered for that address
# alone; /healthz?checks=delivery fails when its email has not gone out within CANARY_MAX_SECONDS.
CANARY_EMAIL = env.str("CANARY_EMAIL", default="")
CANARY_INTERVAL_MINUTES = env.int("CANARY_INTERVAL_MINUTES", default=15)
CANARY_MAX_SECONDS = env.int("CANARY_MAX_SECONDS", default=600)
# Wait for the ESP's "delivered" webhook, not only its acceptance (needs delivery webhooks turned on).
CANARY_WAIT_FOR_DELIVERED = env.bool("CANARY_WAIT_FOR_DELIVERED", default=False)
# With or without a canary, delivery is failing when an email has been due, or an event unmatched, this long.
DELIVERY_LAG_MAX_SECONDS = env.int("DELIVERY_LAG_MAX_SECONDS", default=900)

# Retention, in days: what is older is deleted by beat's hourly "Prune old data" (and `manage.py prune`).
RETAIN_SOURCE_PROBLEMS_DAYS = env.int("RETAIN_SOURCE_PROBLEMS_DAYS", default=30)
RETAIN_WEBHOOK_EVENTS_DAYS = env.int("RETAIN_WEBHOOK_EVENTS_DAYS", default=30)
# Emails sent, rejected or given up, with their matches; pending ones are never pruned.
RETAIN_EMAILS_DAYS = env.int("RETAIN_EMAILS_DAYS", default=90)
# The text of each email sent is kept this long (for the admin), then blanked: it is most of the table's size.
RETAIN_EMAIL_TEXTS_DAYS = env.int("RETAIN_EMAIL_TEXTS_DAYS", default=14)
# Keep this longer than FOLLOW_WINDOW_DAYS: a follow retires by the age of its question's answer event.
RETAIN_MATCHED_EVENTS_DAYS = env.int("RETAIN_MATCHED_EVENTS_DAYS", default=90)
RETAIN_UNCONFIRMED_DAYS = env.int("RETAIN_UNCONFIRMED_DAYS", default=7)
# An address that unsubscribed from everything (or bounced, or complained) is erased after this long,
# keeping only a digest of it and the reason.
ERASE_AFTER_DAYS = env.int("ERASE_AFTER_DAYS", default=30)
RETAIN_CANARY_DAYS = env.int("RETAIN_CANARY_DAYS", default=30)
# A follow that ended itself (FOLLOW_WINDOW_DAYS after its answer) is deleted this long after.
RETAIN_ENDED_FOLLOWS_DAYS = env.int("RETAIN_ENDED_FOLLOWS_DAYS", default=90)
RETENTION_BATCH = env.int("RETENTION_BATCH", default=1000)
RETENTION_RUN_SECONDS = env.int("RETENTION_RUN_SECONDS", default=600)

# Alerts.
MAX_SUBSCRIPTIONS_PER_ADDRESS = env.int("MAX_SUBSCRIPTIONS_PER_ADDRESS", default=100)
# A followed question's alert goes on this long after its answer, for corrections, then retires itself.
FOLLOW_WINDOW_DAYS = env.int("FOLLOW_WINDOW_DAYS", default=30)
# An alert that has matched nothing for this long says so on the manage page.
QUIET_ALERT_DAYS = env.int("QUIET_ALERT_DAYS", default=90)
MATCH_SHARDS = env.int("MATCH_SHARDS", default=1)
# Matching workers hold every saved search in memory: a queue of their own keeps that to a few processes.
MATCH_QUEUE = env.str("MATCH_QUEUE", default="")
# Sending waits on the ESP: a queue of its own can be served by a worker with many threads.
SEND_QUEUE = env.str("SEND_QUEUE", default="")
# Polls wait on sources that may be slow or broken: a queue of their own, served by its own worker
# process, so that matching and sending never wait behind them.
POLL_QUEUE = env.str("POLL_QUEUE", default="poll")
CELERY_TASK_ROUTES = {
    "questions.poll_source": {"queue": POLL_QUEUE},
    **({name: {"queue": MATCH_QUEUE} for name in ("alerts.match_events", "alerts.match_shard",
                                                  "alerts.finish_match")} if MATCH_QUEUE else {}),
    **({"alerts.send_due": {"queue": SEND_QUEUE}} if SEND_QUEUE else {}),
}
RATELIMIT_SIGNUP_PER_IP = env.str("RATELIMIT_SIGNUP_PER_IP", default="20/h")
# Emails one address may be sent on requests from one network (config.proxy.NETWORK_PREFIX), and from all
# networks together: a stranger spends only their own network's share, and reaching the ceiling takes
# requests from seven networks at once.
RATELIMIT_SIGNUP_PER_ADDRESS = env.str("RATELIMIT_SIGNUP_PER_ADDRESS", default="3/h")
RATELIMIT_SIGNUP_PER_ADDRESS_TOTAL = env.str("RATELIMIT_SIGNUP_PER_ADDRESS_TOTAL", default="20/h")
RATELIMIT_VIEW = "alerts.views.rate_limited"
RATELIMIT_IP_META_KEY = "config.proxy.client_ip"
# Delivery: the Delivery table is the queue. A sender leases a chunk of due emails, hands them to the
# ESP (in one call where the ESP takes many), and records every outcome in one statement; a crash
# re-sends at most the chunk in flight. A lease not renewed in time belonged to a dead sender.
DELIVERY_CHUNK_SIZE = env.int("DELIVERY_CHUNK_SIZE", default=100)
DELIVERY_LEASE_SECONDS = env.float("DELIVERY_LEASE_SECONDS", default=60.0)
# Failures are tried again after 30 s, doubling (with jitter) up to an hour, for three days.
DELIVERY_BACKOFF_SECONDS = env.float("DELIVERY_BACKOFF_SECONDS", default=30.0)
DELIVERY_BACKOFF_MAX_SECONDS = env.float("DELIVERY_BACKOFF_MAX_SECONDS", default=3600.0)
DELIVERY_GIVE_UP_HOURS = env.float("DELIVERY_GIVE_UP_HOURS", default=72.0)
# How many send tasks a batch of new emails wakes at once, and how long one task keeps sending.
DELIVERY_SENDERS = env.int("DELIVERY_SENDERS", default=4)
DELIVERY_RUN_SECONDS = env.float("DELIVERY_RUN_SECONDS", default=120.0)
# An ESP that takes one message per call (any Anymail ESP but Postmark) is sent to over this many kept-alive
# connections per sender at once, so that its round trips overlap. Measured at a 20 ms round trip on 2 cores
# with two senders (bench/deliver.py --esp mailgun): 8 gave about 530 emails/s, 16 about 570, 32 no more
# (the CPU, not the wait, is then the limit); a farther ESP gains more from 16.
DELIVERY_ESP_CONNECTIONS = env.int("DELIVERY_ESP_CONNECTIONS", default=16)
EMAIL_MAX_QUESTIONS = env.int("EMAIL_MAX_QUESTIONS", default=50)
DIGEST_HOUR = env.int("DIGEST_HOUR", default=7)
# How many workers make one digest run's emails at once, each for this many seconds at a time.
DIGEST_BUILDERS = env.int("DIGEST_BUILDERS", default=2)
DIGEST_BUILD_SECONDS = env.float("DIGEST_BUILD_SECONDS", default=5.0)
# A digest run not made, or with emails still waiting, this long after its period ended is reported late.
DIGEST_LATE_SECONDS = env.int("DIGEST_LATE_SECONDS", default=900)
# While the ESP is down, one sender probes it with one email, at first after this many seconds, doubling up
# to the most: the most is what bounds how long after the ESP's recovery the queue starts to drain.
ESP_PROBE_SECONDS = env.float("ESP_PROBE_SECONDS", default=5.0)
ESP_PROBE_MAX_SECONDS = env.float("ESP_PROBE_MAX_SECONDS", default=30.0)
# /healthz?checks=delivery fails once the ESP has failed as a whole for this long (at once when it refuses
# our credentials or account), and passes again at the first probe it answers.
ESP_DOWN_ALERT_SECONDS = env.int("ESP_DOWN_ALERT_SECONDS", default=60)
# /healthz fails when an enabled source has had no successful poll for this many of its intervals.
HEALTH_POLL_INTERVALS = env.int("HEALTH_POLL_INTERVALS", default=6)
