"""Django settings: read from the environment only, checked once at start-up."""

from __future__ import annotations

import fnmatch
import secrets
import sys
from pathlib import Path

from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from config.serve import shutdown_grace
from core.env import (
    env_bool,
    env_bytes,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_str,
    env_url,
    env_writable_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = "1.0.0"

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer clearly and concisely; use Markdown code blocks for code."
)

try:
    DEBUG = env_bool("DEBUG", False)
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "*")
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
    if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ImproperlyConfigured(
            f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {LOG_LEVEL!r}"
        )
    LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
    if LOG_FORMAT not in {"text", "json"}:
        raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
    METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
    PORT = env_int("PORT", 8000, minimum=1, maximum=65535)

    LLM_API_KEY = env_secret("LLM_API_KEY", "OPENROUTER_API_KEY")
    LLM_MODEL = env_str("LLM_MODEL", "openai/gpt-4o-mini").strip() or "openai/gpt-4o-mini"
    LLM_BASE_URL = env_url("LLM_BASE_URL", "https://openrouter.ai/api/v1", schemes=("http", "https"))
    LLM_TEMPERATURE = env_float("LLM_TEMPERATURE", 0.7, minimum=0.0, maximum=2.0)
    LLM_MAX_TOKENS_LIMIT = env_int("LLM_MAX_TOKENS_LIMIT", 4096, minimum=1)
    LLM_MAX_TOKENS = env_int("LLM_MAX_TOKENS", 1000, minimum=1, maximum=LLM_MAX_TOKENS_LIMIT)
    LLM_TIMEOUT = env_float("LLM_TIMEOUT", 60.0, minimum=1.0, maximum=3600.0)
    LLM_STREAM_MAX_SECONDS = env_float("LLM_STREAM_MAX_SECONDS", 600.0, minimum=1.0, maximum=86400.0)
    SSE_KEEPALIVE_SECONDS = env_float("SSE_KEEPALIVE_SECONDS", 15.0, minimum=0.1, maximum=3600.0)
    LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2, minimum=0, maximum=10)
    LLM_RETRY_MAX_WAIT = env_float("LLM_RETRY_MAX_WAIT", 10.0, minimum=0.0, maximum=600.0)
    LLM_FALLBACK_MODELS = env_list("LLM_FALLBACK_MODELS", "")
    LLM_HTTP_REFERER = env_str("LLM_HTTP_REFERER", "https://huggingface.co/spaces")
    LLM_APP_TITLE = env_str("LLM_APP_TITLE", "LLM Chat Gateway")

    CHAT_HISTORY_MESSAGES = env_int("CHAT_HISTORY_MESSAGES", 10, minimum=0, maximum=1000)
    CHAT_SYSTEM_PROMPT = env_str("CHAT_SYSTEM_PROMPT", DEFAULT_SYSTEM_PROMPT)
    CHAT_CONTEXT_TOKENS = env_int("CHAT_CONTEXT_TOKENS", 0, minimum=0)

    CONVERSATION_TTL = env_int("CONVERSATION_TTL", 86400, minimum=1)
    CONVERSATION_MAX = env_int("CONVERSATION_MAX", 1000, minimum=1)
    CONVERSATION_MAX_MESSAGES = env_int("CONVERSATION_MAX_MESSAGES", 200, minimum=2)
    MESSAGE_MAX_CHARS = env_int("MESSAGE_MAX_CHARS", 32000, minimum=1)
    # What all conversations together may cost the store, and one client's (see conversation_cost).
    STORE_MAX_BYTES = env_bytes("STORE_MAX_BYTES", "64MiB", minimum=1024**2)
    CLIENT_STORAGE_BYTES = env_bytes("CLIENT_STORAGE_BYTES", "8MiB", minimum=64 * 1024, zero_is_off=True)
    if CLIENT_STORAGE_BYTES > STORE_MAX_BYTES:
        raise ImproperlyConfigured(
            f"CLIENT_STORAGE_BYTES ({CLIENT_STORAGE_BYTES}) must not be larger than STORE_MAX_BYTES "
            f"({STORE_MAX_BYTES})"
        )
    REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"), plain=False)
    # The Redis pool of one worker: each request holds a connection for one round trip only, so this
    # many serve thousands of requests in flight; past it a request waits up to REDIS_POOL_TIMEOUT.
    # REDIS_URL names one node of a Redis Cluster (the client finds the others).
    REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
    REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 64, minimum=1, maximum=10000)
    REDIS_POOL_TIMEOUT = env_float("REDIS_POOL_TIMEOUT", 5.0, minimum=0.1, maximum=300.0)
    REDIS_TIMEOUT = env_float("REDIS_TIMEOUT", 3.0, minimum=0.1, maximum=300.0)
    # The local store's snapshot file. With REDIS_URL it is not used (Redis keeps conversations itself),
    # so it is not checked either: a Space moved to Redis still starts without its /data folder.
    STORE_SNAPSHOT_PATH = (
        env_str("STORE_SNAPSHOT_PATH", "").strip() if REDIS_URL else env_writable_file("STORE_SNAPSHOT_PATH")
    )
    STORE_SNAPSHOT_INTERVAL = env_float("STORE_SNAPSHOT_INTERVAL", 30.0, minimum=0.1, maximum=86400.0)

    BACKEND_API_KEYS = env_list("BACKEND_API_KEYS", "")
    ADMIN_API_KEYS = env_list("ADMIN_API_KEYS", "")
    ANONYMOUS_CONVERSATIONS = env_bool("ANONYMOUS_CONVERSATIONS", True)
    DEBUG_ENDPOINTS = env_bool("DEBUG_ENDPOINTS", True)
    RATE_LIMIT = env_rate("RATE_LIMIT", "60/minute")
    # Proxies in front of the service; the client is that many entries from the right of
    # X-Forwarded-For (gateway.guards.client_address). TRUST_PROXY_HEADERS=true, the older setting,
    # only changes the default to one proxy.
    TRUSTED_PROXY_HOPS = env_int(
        "TRUSTED_PROXY_HOPS", 1 if env_bool("TRUST_PROXY_HEADERS", False) else 0, minimum=0, maximum=10
    )
    # Tokens the server's key may spend per window, per client and in all; off here, set in the
    # container (a public Space) by the Dockerfile.
    CLIENT_TOKEN_BUDGET = env_rate("CLIENT_TOKEN_BUDGET", "0", example="200000/day")
    TOTAL_TOKEN_BUDGET = env_rate("TOTAL_TOKEN_BUDGET", "0", example="2000000/day")
    ALLOWED_MODELS = env_list("ALLOWED_MODELS", "*")
    # OpenRouter fields /v1 forwards only when allowed: they spend beyond the model and token limits.
    SPENDING_EXTRAS = ("plugins", "web_search_options", "provider.max_price")
    ALLOWED_PASSTHROUGH_EXTRAS = env_list("ALLOWED_PASSTHROUGH_EXTRAS", "")
    for _extra in ALLOWED_PASSTHROUGH_EXTRAS:
        if _extra not in SPENDING_EXTRAS:
            raise ImproperlyConfigured(
                f"ALLOWED_PASSTHROUGH_EXTRAS may list {', '.join(SPENDING_EXTRAS)}, got {_extra!r}"
            )
    ALLOW_CLIENT_API_KEY = env_bool("ALLOW_CLIENT_API_KEY", True)
    ASGI_EDGE = env_choice("ASGI_EDGE", "inline", ("inline", "thread"))
    MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 1048576, minimum=1024)
    REQUEST_READ_TIMEOUT = env_float("REQUEST_READ_TIMEOUT", 30.0, minimum=1.0, maximum=3600.0)
    RESPONSE_WRITE_TIMEOUT = env_float("RESPONSE_WRITE_TIMEOUT", 30.0, minimum=1.0, maximum=3600.0)
    SHUTDOWN_GRACE_SECONDS = shutdown_grace()
    if not any(fnmatch.fnmatchcase(LLM_MODEL, pattern) for pattern in ALLOWED_MODELS):
        raise ImproperlyConfigured(f"LLM_MODEL {LLM_MODEL!r} is not allowed by ALLOWED_MODELS")

    CORS_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "*")
    CORS_ALLOW_PRIVATE_NETWORK = env_bool("CORS_ALLOW_PRIVATE_NETWORK", False)
    GITHUB_CLIENT_ID = env_str("GITHUB_CLIENT_ID", "")
    POSTHOG_CLIENT_KEY = env_str("POSTHOG_CLIENT_KEY", "")
except ImproperlyConfigured as exc:
    # One line naming the variable, not a traceback: this is the operator's mistake, not a bug.
    sys.exit(f"Configuration error: {exc}")

SECRET_KEY = secrets.token_urlsafe(50)  # nothing is signed: no sessions, no database
ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
APPEND_SLASH = False
DATABASES: dict[str, dict[str, str]] = {}

INSTALLED_APPS = [
    "config.apps.GatewayConfig",
    "django.contrib.staticfiles",
    "corsheaders",
    "ninja",
    "webui",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "config.middleware.SecurityHeaders",  # Django's SecurityMiddleware, run inline
    "config.middleware.FrameOptions",  # Django's XFrameOptionsMiddleware, run inline
    "config.middleware.finishing",
]
# The security headers of every answer, set here and by those two middlewares only: /docs is framed by
# nobody but itself (Ninja's docs_decorator), the chat page names its framers in its own CSP.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Static files (Swagger UI for /docs, the chat page's files) are collected with content-hashed names
# and served by ServeStatic at the ASGI edge, before Django: an API request never passes through it.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {"staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"}}
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

CACHES = {
    # model list, rate-limit and token-budget counters (one per client and window)
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "default",
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}

CORS_ALLOW_HEADERS = (*default_headers, "x-api-key", "x-client-token", "x-request-id")
CORS_EXPOSE_HEADERS = [
    "Retry-After",
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
]
if CORS_ORIGINS == ["*"]:
    CORS_ALLOW_ALL_ORIGINS = True
    CORS_ALLOW_CREDENTIALS = False
else:
    CORS_ALLOWED_ORIGINS = CORS_ORIGINS
    CORS_ALLOW_CREDENTIALS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {
            "()": "core.telemetry.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
        "json": {"()": "core.telemetry.JsonFormatter"},
    },
    "filters": {"redact": {"()": "core.redact.RedactingFilter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        },
        "buffer": {"class": "core.logbuffer.RingBufferHandler", "filters": ["redact"]},
    },
    "root": {"handlers": ["stdout", "buffer"], "level": LOG_LEVEL},
    "loggers": {
        # Every 5xx is logged once where it happens (the store, the upstream client, the API's handler
        # for unexpected errors, with its traceback): Django's own line would repeat it.
        "django.request": {"level": "CRITICAL"},
        "httpx": {"level": "WARNING"},
        # uvicorn's own lines take this service's format too (JSON in the container)
        "uvicorn": {"handlers": ["stdout", "buffer"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": ["stdout", "buffer"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # ours is gateway.access
    },
}
