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
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import env_int, env_str

ROOT = Path(__file__).resolve().parent.parent


def uvicorn_command() -> list[str]:
    """The uvicorn command line for the environment; raises ImproperlyConfigured for a bad setting."""
    host = env_str("HOST", "127.0.0.1").strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ImproperlyConfigured(f"HOST must be an IP address or localhost, got {host!r}") from None
    port = env_int("PORT", 8000, minimum=1, maximum=65535)
    workers = env_int("WORKERS", 1, minimum=1, maximum=64)
    shared = bool(os.environ.get("REDIS_URL", "").strip())
    if workers > 1 and not shared and env_str("STORE_SNAPSHOT_PATH", "").strip():
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
    ]


def collect_static() -> None:
    """Collect Swagger UI's and the chat page's files (content-hashed) unless the container did."""
    if (ROOT / "staticfiles" / "staticfiles.json").exists():
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
