"""Typed readers for environment settings; a bad value fails at start-up, naming its variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    return (os.environ if environ is None else environ).get(name, default)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """A whole number; `environ` reads another environment than this process's (a child's)."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ImproperlyConfigured(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_list(name: str, default: str) -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...], plain: bool = True) -> str:
    """A URL with one of `schemes`. `plain` ones may hold no user:password and no query: the upstream's
    key belongs in LLM_API_KEY, where it is never shown. The value is never repeated in the error."""
    # Set but empty is unset (a blank line in an .env file): the default, not a refusal to start.
    raw = os.environ.get(name, "").strip() or default.strip()
    if not raw:
        return ""
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not (parsed.netloc or (parsed.scheme == "unix" and parsed.path)):
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed}")
    if plain and (parsed.username or parsed.password or parsed.query or parsed.fragment):
        raise ImproperlyConfigured(f"{name} must not contain user:password, a query string or a fragment")
    return raw.rstrip("/")


def env_secret(*names: str) -> str:
    """The first non-empty of several variables (a key and its aliases)."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def env_rate(name: str, default: str, *, example: str = "60/minute") -> tuple[int, int]:
    """`N/second|minute|hour|day` as (N, seconds); `0` or `off` turns the limit off: (0, 0). Set but empty
    is the default: a blank line in an .env file must not quietly lift a limit on a public service."""
    raw = os.environ.get(name, "").strip().lower() or default.strip().lower()
    if raw in ("0", "off", ""):
        return (0, 0)
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _PERIODS:
        raise ImproperlyConfigured(
            f"{name} must look like {example} (second, minute, hour or day) or 0, got {raw!r}"
        )
    return (int(count), _PERIODS[period])


_BYTE_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def env_bytes(name: str, default: str, *, minimum: int, zero_is_off: bool = False) -> int:
    """A size in bytes: a whole number, optionally with KiB, MiB or GiB (`64MiB`); 0 only if it is off.
    Set but empty is the default."""
    raw = os.environ.get(name, "").strip() or default
    match = re.fullmatch(r"(\d+)\s*([A-Za-z]*)", raw)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _BYTE_UNITS:
        raise ImproperlyConfigured(f"{name} must be a number of bytes such as 67108864 or 64MiB, got {raw!r}")
    value = int(match.group(1)) * _BYTE_UNITS[unit]
    if value < minimum and not (zero_is_off and value == 0):
        floor = f"0 (off) or at least {minimum}" if zero_is_off else f"at least {minimum}"
        raise ImproperlyConfigured(f"{name} must be {floor} bytes, got {value}")
    return value


def env_writable_file(name: str) -> str:
    """An absolute file path whose folder exists and this process may write in (empty: unset).
    The file itself need not exist yet; when it does, it must be a readable regular file."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    path = os.path.abspath(raw)
    folder = os.path.dirname(path)
    if os.path.isdir(path):
        raise ImproperlyConfigured(f"{name} {path} is a folder; name a file in it")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ImproperlyConfigured(f"{name} {path} exists and is not a regular file")
    if not os.path.exists(folder):
        raise ImproperlyConfigured(f"{name} {path}: the folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise ImproperlyConfigured(f"{name} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"{name} {path}: the folder {folder} is not writable by this process (uid {os.getuid()})"
        )
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise ImproperlyConfigured(f"{name} {path} is not readable by this process (uid {os.getuid()})")
    return path
