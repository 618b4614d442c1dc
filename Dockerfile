# syntax=docker/dockerfile:1
# The one image of the stack: web (the default command), worker, beat and migrate
# (docker-compose.yml gives each its command). Python as in CI.
ARG PYTHON_VERSION=3.11

# --- builder: wheels of the project's pinned dependencies ---------------------------------
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler for any dependency without a wheel for this platform; none of it goes further.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# Only pyproject.toml: this layer (the slow one) is rebuilt when the dependencies change,
# not when the code does. The project itself is an empty wheel that pins them.
COPY pyproject.toml ./
RUN pip wheel --wheel-dir /wheels .

# --- runtime: no compiler, no pip cache, a user without privileges -------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=project.settings \
    STATIC_ROOT=/app/staticfiles
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
WORKDIR /app
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels agent-registry
# The code and the collected static files belong to root: the app user can read, not change them.
COPY . .
RUN SECRET_KEY=collectstatic-only-not-a-real-key DEBUG=0 \
    python manage.py collectstatic --noinput --verbosity 0

USER app
EXPOSE 8000
# /healthz answers without the database (compose's web service runs the same probe).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# gunicorn's graceful stop is SIGTERM, Docker's default stop signal.
CMD ["gunicorn", "-c", "project/gunicorn.conf.py"]
