# webchannel as a container image, in the layout of an install on a host (README, and
# deploy/systemd/webchannel.service): the package installed with pip into a virtualenv at
# /opt/webchannel, its console script `webchannel` as the entry point, run as the user webchannel.
# Configure it with WC_* variables, or mount a file at /etc/webchannel/webchannel.toml and run
# `serve -c /etc/webchannel/webchannel.toml`.
# Build: `docker build -t webchannel .`; run with Redis and two workers: `docker compose up`
# (compose.yaml). Alone, the image runs one process with the in-process channel layer on
# 0.0.0.0:8080. The test suite lints this file with hadolint and runs its command from a copy of
# exactly the files it copies (tests/e2e/test_deploy_files.py).
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/webchannel

WORKDIR /src
# The dependencies first: their layer outlives changes to the code.
COPY requirements.txt ./
RUN /opt/webchannel/bin/pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY channels_api ./channels_api
COPY webchannel_project ./webchannel_project
COPY webchannel_client ./webchannel_client
RUN /opt/webchannel/bin/pip install --no-cache-dir .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/webchannel/bin:$PATH \
    WC_SERVER__LISTEN_ADDRESS=0.0.0.0:8080

RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin webchannel
COPY --from=build /opt/webchannel /opt/webchannel

USER 10001:10001
EXPOSE 8080

# /readyz: a probe message went through the channel layer (Redis too) and came back. The slim
# image has no curl: Python's urllib raises on anything but 2xx, so the exit status is 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]

ENTRYPOINT ["webchannel"]
CMD ["serve"]
