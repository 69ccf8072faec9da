"""Gunicorn's settings (`gunicorn -c config/gunicorn.conf.py config.wsgi`): its own lines, errors and the
access log, in the service's log format, so that every line the web container writes parses alike."""

from config.settings import LOG_FORMAT, LOGGING

accesslog = "-"
# Who, what, the status, the size and the time taken in microseconds; the JSON formatter quotes it all.
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(D)s'
if LOG_FORMAT != "plain":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": LOGGING["formatters"]["json"]},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
