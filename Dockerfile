FROM python:3.12-slim

# A public Space: one proxy in front (HuggingFace's), and a cap on what the owner's key spends.
# DL3064 mistakes the *_TOKEN_BUDGET names (numbers of LLM tokens) for secrets.
# hadolint ignore=DL3064
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=7860 \
    LOG_FORMAT=json \
    TRUSTED_PROXY_HOPS=1 \
    CLIENT_TOKEN_BUDGET=100000/day \
    TOTAL_TOKEN_BUDGET=1000000/day

# /data: where a Space's persistent storage is mounted at run time (STORE_SNAPSHOT_PATH=/data/...);
# made here, owned by uid 1000, for `docker run -v name:/data` and for a Space without the storage.
RUN useradd --create-home --uid 1000 user && mkdir -p /data && chown user:user /data && chmod 700 /data
WORKDIR /home/user/app

COPY --chown=user:user requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=user:user . .
RUN python manage.py collectstatic --noinput -v0
USER 1000

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '7860') + '/ready', timeout=4)"]

CMD ["python", "-m", "config.serve"]
