#!/usr/bin/env bash
# Load on the web tier: gunicorn with PostgreSQL and Redis on this machine, driven by wrk.
# Prints requests/s and p50/p95 for the search page, the signup POST and the one-click unsubscribe POST:
# each endpoint is measured RUNS times (default 3), one after another, and each figure is the median
# of those runs with the lowest and highest in brackets.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/searchbench_1000000 REDIS_URL=redis://127.0.0.1:6379/9 \
#     [RUNS=3] bash bench/web.sh [seconds] [connections]
#
# Use a database made by bench/search.py for a large archive. It needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?set DATABASE_URL to a PostgreSQL database}"
: "${REDIS_URL:?set REDIS_URL}"
SECONDS_EACH=${1:-20}
CONNECTIONS=${2:-16}
RUNS=${RUNS:-3}
PORT=${PORT:-8099}
BASE="http://127.0.0.1:$PORT"
PY=.venv/bin/python
command -v wrk >/dev/null || { echo "bench/web.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
(( RUNS >= 1 )) || { echo "RUNS must be at least 1" >&2; exit 1; }
export DEBUG=0 ALLOWED_HOSTS=127.0.0.1 SITE_URL="$BASE" LOG_LEVEL=WARNING CONN_MAX_AGE=60 \
  RATELIMIT_SIGNUP_PER_IP=100000000/s RATELIMIT_SIGNUP_PER_ADDRESS=100000000/s \
  SECRET_KEY=bench-secret-key-not-for-production EMAIL_BACKEND=django.core.mail.backends.dummy.EmailBackend \
  CELERY_TASK_ALWAYS_EAGER=0

$PY manage.py migrate --no-input -v0
WORKERS=$(( $(nproc) * 2 + 1 ))
.venv/bin/gunicorn config.wsgi --bind "127.0.0.1:$PORT" --workers "$WORKERS" --log-level warning &
GUNICORN=$!
trap 'kill $GUNICORN 2>/dev/null; wait $GUNICORN 2>/dev/null || true' EXIT
# /help/ rather than /healthz, which answers 503 here: nothing polls the API in a bench.
for _ in $(seq 1 50); do curl -sf -o /dev/null "$BASE/help/" -m 2 && break || sleep 0.3; done

# One session's CSRF cookie and token, reused by every POST.
JAR=$(mktemp)
TOKEN=$(curl -s -c "$JAR" "$BASE/alerts/new/?q=police" | sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' | head -n1)
COOKIE="csrftoken=$(awk '$6 == "csrftoken" {print $7}' "$JAR")"
UNSUBSCRIBE=$($PY manage.py shell -c "
from django.utils import timezone
from alerts.models import Subscriber
from alerts import tokens
s, _ = Subscriber.objects.get_or_create(email='load-unsubscribe@example.org', defaults={'confirmed_at': timezone.now()})
print('/unsubscribe/' + tokens.make(s, tokens.UNSUBSCRIBE) + '/')" 2>/dev/null | tail -n1)
# Each POST once by hand first: a bench that measured an error page (a missing token, a refused form) would
# flatter the service.
expect() {  # status, then curl arguments
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' "${@:2}")
  [[ $got == "$1" ]] || { echo "bench/web.sh: expected $1, got $got from ${*: -1}" >&2; exit 1; }
}
[[ $UNSUBSCRIBE == /unsubscribe/*/ ]] || { echo "bench/web.sh: no unsubscribe link was made" >&2; exit 1; }
expect 200 -X POST --data "List-Unsubscribe=One-Click" "$BASE$UNSUBSCRIBE"
expect 302 -X POST -b "$COOKIE" -H "Referer: $BASE/alerts/new/" \
  --data "csrfmiddlewaretoken=$TOKEN&email=check%40example.org&q=palantir&frequency=daily&alert_on=both&label=&website=" \
  "$BASE/alerts/new/"

run() {  # name, then wrk arguments
  local name=$1; shift
  local lines="" i
  for i in $(seq 1 "$RUNS"); do
    # A request slower than wrk's 2 s default would be dropped as an error: it is timed instead.
    lines+=$(wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --timeout 60s "$@" | grep '^RESULT')$'\n'
  done
  # Errors are summed over the runs: any at all means the figures are not of the page itself.
  printf '%s' "$lines" | $PY -c '
import statistics, sys
runs = [dict(field.split("=") for field in line.split()[1:]) for line in sys.stdin if line.strip()]
def spread(key):
    values = [float(run[key]) for run in runs]
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"
rps, p50, p95 = (spread(key) for key in ("rps", "p50_ms", "p95_ms"))
slowest = max(float(run["max_ms"]) for run in runs)
errors = sum(int(run["errors"]) for run in runs)
print(f"{sys.argv[1]:<38} {sys.argv[2]:>5} {rps:>26} {p50:>20} {p95:>20} {slowest:>9.0f} {errors:>6}")
' "$name" "$CONNECTIONS"
}

echo "machine: $(uname -m), $(nproc) cores; gunicorn workers: $WORKERS; wrk: 2 threads, $CONNECTIONS connections, ${SECONDS_EACH}s each"
echo "questions in the archive: $($PY manage.py shell -c 'from questions.models import Question; print(Question.objects.count())' 2>/dev/null | tail -n1)"
echo "median (min–max) of $RUNS runs of wrk per endpoint; the slowest request of all runs; errors summed over the runs"
printf '%-38s %5s %26s %20s %20s %9s %6s\n' endpoint conns requests/s "p50 ms" "p95 ms" "max ms" errors
run "search: palantir" -s bench/wrk_report.lua "$BASE/?q=palantir"
run "search: \"mental health\"" -s bench/wrk_report.lua "$BASE/?q=%22mental+health%22"
run "search: (prison OR probation) -covid" -s bench/wrk_report.lua "$BASE/?q=%28prison+OR+probation%29+-covid"
WRK_BODY="csrfmiddlewaretoken=$TOKEN&email=EMAILN%40example.org&q=palantir&frequency=daily&alert_on=both&label=&website=" \
  WRK_COOKIE="$COOKIE" WRK_REFERER="$BASE/alerts/new/" run "signup POST" -s bench/wrk_post.lua "$BASE/alerts/new/"
WRK_BODY="List-Unsubscribe=One-Click" WRK_COOKIE="" WRK_REFERER="" \
  run "one-click unsubscribe POST" -s bench/wrk_post.lua "$BASE$UNSUBSCRIBE"
rm -f "$JAR"
