FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --no-input
# Not root: a worker warns (in a line that is not JSON) when it runs as root, and nothing here needs it.
# var/ is the service's own (the metrics volume is created from it, owned alike).
RUN useradd --system --home-dir /app/var app && mkdir -p var/metrics && chown -R app var
USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
