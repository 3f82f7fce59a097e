# voxbus image: every service; choose one with `serve SERVICE` (default: all in one process).
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY libs ./libs
COPY services ./services
COPY src ./src
RUN uv sync --frozen --no-dev --compile-bytecode --no-editable

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libopus0 && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data/audio && chown 65534:65534 /data/audio
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH" AUDIO_STORAGE_PATH=/data/audio
WORKDIR /app
EXPOSE 8000 10700
USER 65534
# healthy = ready to take traffic (/ready: the bus, the store and the service's own work answer)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('PORT', '8000'), timeout=2)"]
ENTRYPOINT ["voxbus"]
CMD ["up"]
