# Everything runs from a virtual environment in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run stack test lint install clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/activate

install: $(BIN)/activate

## run: migrate, load the demo agents once, create an admin (password printed once), serve on
## 127.0.0.1:8000 (another port: make run PORT=8080). Writes .env.local once (DEBUG=1 and a generated
## SECRET_KEY; settings read it) so that `.venv/bin/python manage.py ...` works bare afterwards.
run: install .env.local
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --no-input
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py bootstrap_demo
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runserver $(HOST):$(PORT)

## stack: what docker-compose.yml runs, without Docker: migrate, then gunicorn on 127.0.0.1:8000, a
## Celery worker and beat, all logging to this terminal; Ctrl-C stops the three gracefully.
## Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0); DATABASE_URL as for `run`.
STACK_ENV = DEBUG=$${DEBUG:-1} REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	GUNICORN_BIND=$${GUNICORN_BIND:-$(HOST):$(PORT)}
stack: install
	$(STACK_ENV) $(BIN)/python manage.py migrate --no-input
	$(STACK_ENV) bash -c 'trap "kill -TERM \$$(jobs -p) 2>/dev/null" INT TERM; \
	  $(BIN)/gunicorn -c project/gunicorn.conf.py & \
	  $(BIN)/celery -A project worker -l $${LOG_LEVEL:-INFO} & \
	  $(BIN)/celery -A project beat -l $${LOG_LEVEL:-INFO} \
	    --scheduler django_celery_beat.schedulers:DatabaseScheduler & \
	  wait; wait'

## test: the whole suite (SQLite unless DATABASE_URL is set; PostgreSQL/Redis tests skip locally without them)
test: install
	DEBUG=$${DEBUG:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/mypy events agents_app project
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run

## bench: the benchmark suite of issue 7 against the peers (installs the `bench` extra); writes bench/RESULTS.md.
## Needs PostgreSQL on 127.0.0.1:5432 (PG_URL); creates and drops its own bench_* databases. BENCH_ARGS=--quick
.PHONY: bench
bench: install
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

.env.local:
	@printf '# Written once by `make run` for the embedded default; read by project/settings.py.\nDEBUG=1\nSECRET_KEY=%s\n' \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env.local
	@echo "wrote .env.local (DEBUG=1, a generated SECRET_KEY)"

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache
