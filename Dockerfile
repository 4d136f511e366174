# webchannel as a container image. Build: `docker build -t webchannel .`; run with Redis and two
# workers: `docker compose up` (compose.yaml). Alone, the image runs one process with the
# in-process channel layer on 0.0.0.0:8080. The test suite lints this file with hadolint and
# runs its command from a copy of exactly the files it copies (tests/e2e/test_deploy_files.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin webchannel

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY manage.py ./
COPY channels_api ./channels_api
COPY webchannel_project ./webchannel_project

USER 10001:10001
ENV WC_SERVER__LISTEN_ADDRESS=0.0.0.0:8080
EXPOSE 8080

# /readyz: a probe message went through the channel layer (Redis too) and came back. The slim
# image has no curl: Python's urllib raises on anything but 2xx, so the exit status is 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]

ENTRYPOINT ["python", "manage.py"]
CMD ["serve"]
