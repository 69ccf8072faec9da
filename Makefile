PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SAMPLES := questions/fixtures/seed_questions.json questions/fixtures/written_questions_sample.jsonl.gz questions/fixtures/list_page_excerpt.json questions/fixtures/question_detail.json

.PHONY: install migrate sample run web worker beat test lint bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/python manage.py migrate --no-input

sample: migrate
	$(BIN)/python manage.py import_questions --if-empty $(SAMPLES)

# Web, workers and beat together on the embedded defaults (SQLite, a file broker, emails written to var/outbox),
# on PORT (8000). One Ctrl-C stops them all (config/run.py).
run: sample
	@exec $(BIN)/python -m config.run

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# Every benchmark, each printing its table (median of three runs with the range, where the script repeats).
# They need PostgreSQL and Redis on this machine (see docs/benchmarks.md) and wrk, and take about two hours
# in all. bench/web.sh loads the 1M-question database that bench/search.py builds.
WEB_BENCH := DATABASE_URL=postgres://postgres@127.0.0.1:5432/searchbench_1000000 REDIS_URL=redis://127.0.0.1:6379/9
bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/match.py
	$(BIN)/python bench/percolate.py
	$(BIN)/python bench/deliver.py
	$(BIN)/python bench/digest.py
	$(BIN)/python bench/outage.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/hostile.py
	$(BIN)/pip install --quiet -r bench/requirements-peers.txt
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/pipeline.py
	$(WEB_BENCH) bash bench/web.sh 20 4
	$(WEB_BENCH) bash bench/web.sh 20 16
