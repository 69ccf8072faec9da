"""Gunicorn's settings (`gunicorn -c config/gunicorn.conf.py config.wsgi`): its own lines, errors and the
access log, in the service's log format, so that every line the web container writes parses alike."""

from gunicorn.glogging import Logger

from config.redact import redact
from config.settings import LOG_FORMAT, LOGGING


class AccessLogWithoutTokens(Logger):
    """The access log names each request by its path with the tokens of emailed links taken out. The path
    is the one the application routes (escapes decoded), so that an escaped slash cannot slip a token past."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = redact(environ.get("PATH_INFO") or "/")
        query = environ.get("QUERY_STRING")
        atoms["U"] = path
        atoms["r"] = f"{environ['REQUEST_METHOD']} {path}{'?' + query if query else ''} {environ['SERVER_PROTOCOL']}"
        return atoms


logger_class = AccessLogWithoutTokens
# A worker is replaced after about a thousand requests, so that nothing a stream of strangers' searches leaves
# in its caches (or any slow leak) outlives it; the jitter keeps the workers from restarting together.
max_requests = 1000
max_requests_jitter = 100
accesslog = "-"
# Who, what, the status, the size and the time taken in microseconds; the JSON formatter quotes it all.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)s'
if LOG_FORMAT != "plain":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": LOGGING["formatters"]["json"]},
        "filters": LOGGING["filters"],
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                                 "filters": ["request_id", "redact_tokens"]}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
