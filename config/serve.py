"""`python -m config.serve`: how `make run` and the container start the service, so the two cannot drift.

It checks HOST, PORT and WORKERS like every other setting (one `Configuration error:` line naming the
variable), refuses several workers without a shared store or with a snapshot file, collects the static
files once, then becomes uvicorn.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import env_int, env_str

ROOT = Path(__file__).resolve().parent.parent


SHUTDOWN_GRACE_DEFAULT = 10
SHUTDOWN_GRACE_MAX = 600
# A request head is bounded, and must arrive in time, by this protocol (uvicorn's own has neither).
HTTP_PROTOCOL = "config.protocol:BoundedHttpToolsProtocol"


def shutdown_grace(environ: Mapping[str, str] | None = None) -> int:
    """SHUTDOWN_GRACE_SECONDS: how long open streams may go on once a shutdown starts."""
    return env_int(
        "SHUTDOWN_GRACE_SECONDS",
        SHUTDOWN_GRACE_DEFAULT,
        minimum=0,
        maximum=SHUTDOWN_GRACE_MAX,
        environ=environ,
    )


def uvicorn_command(environ: Mapping[str, str] | None = None) -> list[str]:
    """The uvicorn command line for an environment (this process's by default): the same for
    `make run`, the container, the tests' live servers and the benchmark. Raises ImproperlyConfigured
    for a bad setting."""
    host = env_str("HOST", "127.0.0.1", environ=environ).strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ImproperlyConfigured(f"HOST must be an IP address or localhost, got {host!r}") from None
    port = env_int("PORT", 8000, minimum=1, maximum=65535, environ=environ)
    workers = env_int("WORKERS", 1, minimum=1, maximum=64, environ=environ)
    shared = bool(env_str("REDIS_URL", "", environ=environ).strip())
    if workers > 1 and not shared and env_str("STORE_SNAPSHOT_PATH", "", environ=environ).strip():
        raise ImproperlyConfigured(
            f"WORKERS={workers} with STORE_SNAPSHOT_PATH: each worker would save its own conversations over "
            "the others' snapshot; use REDIS_URL to share conversations between workers"
        )
    if workers > 1 and not shared:
        raise ImproperlyConfigured(
            f"WORKERS={workers} needs REDIS_URL: each worker would keep its own conversations and figures"
        )
    uvicorn = shutil.which("uvicorn", path=str(Path(sys.executable).parent)) or "uvicorn"
    return [
        uvicorn,
        "config.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",  # the service writes its own access line (gateway.access)
        # The service reads X-Forwarded-For itself (TRUSTED_PROXY_HOPS): uvicorn's own handling would
        # replace the peer address with a header entry for loopback peers (and take the left-most one,
        # which the client writes, with FORWARDED_ALLOW_IPS=*).
        "--no-proxy-headers",
        "--http",
        HTTP_PROTOCOL,
        # The service ends open streams itself when the grace is over (config/protocol.py); uvicorn
        # cancels whatever is still running a second later.
        "--timeout-graceful-shutdown",
        str(shutdown_grace(environ) + 1),
    ]


def collect_static() -> None:
    """Collect Swagger UI's and the chat page's files (content-hashed) when the copy is missing or older
    than the project's own static files (the container collects them when it is built)."""
    manifest = ROOT / "staticfiles" / "staticfiles.json"
    sources = [f for f in (ROOT / "webui" / "static").rglob("*") if f.is_file()]
    newest = max((f.stat().st_mtime for f in sources), default=0.0)
    if manifest.exists() and manifest.stat().st_mtime >= newest:
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)


def main() -> None:
    try:
        command = uvicorn_command()
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    collect_static()
    if int(command[command.index("--workers") + 1]) > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.chdir(ROOT)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
