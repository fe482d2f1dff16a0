"""The configured access and admin keys, by name, and fingerprints: no Ninja or Django import beyond
settings, so the log filter and the uvicorn protocol can use them before Django is set up."""

from __future__ import annotations

import functools
import hashlib
import re

from django.conf import settings

NAME_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:24]


@functools.lru_cache(maxsize=8)
def named_keys(entries: tuple[str, ...]) -> dict[str, str]:
    """`name:key` or `key` entries → {key: name}; an unnamed key is named by its fingerprint."""
    keys: dict[str, str] = {}
    for entry in entries:
        name, colon, key = entry.partition(":")
        if not (colon and key and NAME_SHAPE.fullmatch(name)):
            name, key = f"key-{fingerprint(entry)[:8]}", entry
        keys[key] = name
    return keys


def access_keys() -> dict[str, str]:
    return named_keys(tuple(settings.BACKEND_API_KEYS))


def admin_keys() -> dict[str, str]:
    return named_keys(tuple(settings.ADMIN_API_KEYS))


def any_keys() -> bool:
    """Whether access or admin keys are configured (then diagnostics are for admins only)."""
    return bool(settings.BACKEND_API_KEYS or settings.ADMIN_API_KEYS)
