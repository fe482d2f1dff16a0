"""Snapshots of the local store: its conversations, records (stored responses of /v1/responses, the
metadata of /v1/conversations) and usage figures in one file, so a restart keeps them with no database
(STORE_SNAPSHOT_PATH; saved every STORE_SNAPSHOT_INTERVAL seconds when something changed, and at
shutdown; loaded at start-up, before serving).

The file: a header line (format, version, usage figures), one JSON line per conversation (its kind,
expiry as wall-clock time, and every field), least recently active first, then one JSON line per record
(its kind, slot, expiry, the record itself, and the quota key it counts against if any), least recently
written first, and an end line counting
them; it is written and read a line at a time, so neither needs much memory. Files of versions 1
(before records were kept) and 2 (before a record named its quota key) are read as they are.

Saving never holds the event loop for long. The loop takes the store's index and figures in one cheap
step (`LocalStore.contents`); a thread reads each conversation whole from the cache, serialises it and
streams it into a temporary file in the same folder, fsyncs it, renames it over the old snapshot and
fsyncs the folder. A crash at any moment leaves the old complete snapshot or the new complete one.
Reading conversations one by one off the loop means one that gets a turn during a save is saved as it
was before or after that turn, never half; the change counter makes the next tick save it again.

Loading drops expired conversations and applies the store's caps. A file that cannot be read, or was
written by a newer format version, is not guessed at: the service starts empty, logs one ERROR line
naming the file and the reason, and moves the file aside (never overwriting or deleting it).

`<path>.lock`, held while the process runs, keeps a second process from saving over the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard, get_origin, get_type_hints

import orjson
from django.conf import settings

from core.clock import utc_now_iso
from core.jsonio import dumps_to_keep
from stores import get_store
from stores.base import Conversation, Kind
from stores.local import LocalContents, LocalStore

logger = logging.getLogger(__name__)

FORMAT = "llm-chat-gateway/store-snapshot"
VERSION = 3  # 2: records kept (stored responses, conversations' metadata); 3: a record names its quota key
LOCK_WAIT_SECONDS = 10.0  # a process being replaced may still be saving its last snapshot
YIELD_EVERY = 32  # conversations serialised between two chances for the event loop to take the GIL

_FIELD_TYPES: dict[str, type] = {
    name: get_origin(hint) or hint for name, hint in get_type_hints(Conversation).items()
}
_FIELDS = tuple(f.name for f in fields(Conversation))
_KINDS = {kind.value: kind for kind in Kind}
_STATS_INTS = ("requests", "errors", "evictions")
_MODEL_INTS = frozenset(("requests", "errors", "prompt_tokens", "completion_tokens"))


class UnreadableSnapshot(Exception):
    """The file cannot be used as a snapshot; the message says why, in one line."""


class CannotStart(Exception):
    """The snapshot file cannot be taken on (another process holds it); the message names the setting."""


# Saving (in a thread) ------------------------------------------------------------------------------


def write_snapshot(store: LocalStore, contents: LocalContents, path: Path) -> int:
    """Save `contents` (each conversation read from `store`) to `path`, crash-safe; the size in bytes."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            os.fchmod(out.fileno(), 0o600)
            _encode(store, contents, out)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)
    return size


def _encode(store: LocalStore, contents: LocalContents, out: BinaryIO) -> None:
    """A header line, one line per conversation (least recently active first, kind by kind), an end line
    with the count: written and read a conversation at a time, so neither holds much memory or the GIL
    for long. orjson escapes control characters, so no record contains a line break."""
    header = {"format": FORMAT, "version": VERSION, "written_at": contents.taken_at, "usage": contents.usage}
    out.write(orjson.dumps(header) + b"\n")
    written = 0
    for kind, entries in contents.index.items():
        for count, (conversation_id, expires) in enumerate(entries, 1):
            if count % YIELD_EVERY == 0:
                time.sleep(0)  # lets a waiting event loop take the GIL now rather than in 5 ms
            conversation = store.read(kind, conversation_id)
            if conversation is None:  # deleted or expired since the index was taken
                continue
            record = {
                "kind": kind.value,
                "expires_at": round(expires + contents.wall_minus_monotonic, 3),
                "conversation": {name: getattr(conversation, name) for name in _FIELDS},
            }
            out.write(orjson.dumps(record) + b"\n")
            written += 1
    records = 0
    for kind, slots in contents.records.items():
        for count, (slot, expires, quota_key) in enumerate(slots, 1):
            if count % YIELD_EVERY == 0:
                time.sleep(0)
            raw = store.read_record(kind, slot)
            if raw is None:  # deleted or pushed out since the index was taken
                continue
            line = {
                "kind": kind.value,
                "slot": slot,
                "expires_at": round(expires + contents.wall_minus_monotonic, 3),
                "record": orjson.Fragment(raw),
                **({"quota": quota_key} if quota_key is not None else {}),
            }
            out.write(orjson.dumps(line) + b"\n")
            records += 1
    out.write(orjson.dumps({"end": True, "conversations": written, "records": records}) + b"\n")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Loading (at start-up) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Restored:
    conversations: int
    expired: int
    over_cap: int
    records: int = 0  # stored responses and conversation metadata put back (expired and over cap: left out)


@dataclass(frozen=True)
class SavedRecord:
    """A record line: a stored response or a conversation's metadata."""

    kind: Kind
    slot: str
    raw: bytes
    expires_at: float
    quota_key: str | None = None  # whose CLIENT_STORAGE_BYTES it counts against (older snapshots: none)


def load_snapshot(store: LocalStore, path: Path, now: float) -> Restored | None:
    """Put a snapshot back into an empty store, a conversation at a time, leaving out expired ones and
    applying the store's caps; None when there is no file yet. UnreadableSnapshot when anything in it is
    amiss: the caller then empties the store (the usage figures are only put back at the end)."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableSnapshot(f"cannot be read ({exc.strerror or exc})") from None
    live = expired = over_cap = records = 0
    try:
        with file:
            usage = read_header(file)
            for saved in read_conversations(file):
                if isinstance(saved, SavedRecord):
                    if saved.expires_at > now:
                        ttl = min(saved.expires_at - now, settings.CONVERSATION_TTL)
                        records += 1 - store.restore_record(
                            saved.kind, saved.slot, saved.raw, ttl, saved.quota_key
                        )
                    continue
                kind, conversation, expires = saved
                if expires <= now:
                    expired += 1
                    continue
                _trim(conversation, settings.CONVERSATION_MAX_MESSAGES)
                over_cap += store.restore(kind, conversation, min(expires - now, settings.CONVERSATION_TTL))
                live += 1
    except OSError as exc:
        raise UnreadableSnapshot(f"cannot be read ({exc.strerror or exc})") from None
    store.restore_usage(usage)
    return Restored(live - over_cap, expired, over_cap, records)


def check_snapshot(path: Path) -> int:
    """How many conversations a snapshot holds; UnreadableSnapshot unless it is whole and well-formed."""
    with path.open("rb") as file:
        read_header(file)
        return sum(1 for saved in read_conversations(file) if not isinstance(saved, SavedRecord))


def read_header(file: BinaryIO) -> dict[str, Any]:
    """Check the first line (the format and its version) and return the usage figures it holds."""
    header = _parse(file.readline(1 << 20), 1)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UnreadableSnapshot("is not a conversation store snapshot")
    version = header.get("version")
    if not _is_int(version) or version < 1:
        raise UnreadableSnapshot("has no valid format version")
    if version > VERSION:
        raise UnreadableSnapshot(
            f"was written by a newer format version ({version}; this service reads up to {VERSION})"
        )
    return _usage(header.get("usage"))


def read_conversations(file: BinaryIO) -> Iterator[tuple[Kind, Conversation, float] | SavedRecord]:
    """Each conversation after the header, then each record, checked, up to the end line, which must
    count them all (a version 1 file has no records and counts only its conversations)."""
    seen = records = 0
    for number, line in enumerate(file, 2):
        item = _parse(line, number)
        if isinstance(item, dict) and "end" in item:
            counted = {"end": True, "conversations": seen}
            if item != counted and item != {**counted, "records": records}:
                raise UnreadableSnapshot(f"ends (line {number}) with a count that does not match its {seen}")
            if file.read(1):
                raise UnreadableSnapshot(f"goes on after its end (line {number})")
            return
        if isinstance(item, dict) and "record" in item:
            yield _saved_record(item, number)
            records += 1
            continue
        if records:
            raise UnreadableSnapshot(f"holds a conversation after its records (line {number})")
        yield _record(item, number)
        seen += 1
    raise UnreadableSnapshot(f"is cut short (no end line after {seen} conversations)")


def _saved_record(item: dict[str, Any], number: int) -> SavedRecord:
    where = f"line {number}"
    if set(item) - {"quota"} != {"kind", "slot", "expires_at", "record"} or item["kind"] not in _KINDS:
        raise UnreadableSnapshot(f"holds a malformed record ({where})")
    expires, slot, record, quota_key = item["expires_at"], item["slot"], item["record"], item.get("quota")
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise UnreadableSnapshot(f"holds a record whose expires_at is not a number ({where})")
    if not isinstance(slot, str) or "/" not in slot or not isinstance(record, dict):
        raise UnreadableSnapshot(f"holds a malformed record ({where})")
    if quota_key is not None and not isinstance(quota_key, str):
        raise UnreadableSnapshot(f"holds a record whose quota is not a string ({where})")
    return SavedRecord(_KINDS[item["kind"]], slot, dumps_to_keep(record), float(expires), quota_key)


def _parse(line: bytes, number: int) -> Any:
    if not line.endswith(b"\n"):
        raise UnreadableSnapshot(f"is cut short (line {number} is incomplete)")
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise UnreadableSnapshot(f"is damaged (line {number}: {exc})") from None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _record(item: Any, number: int) -> tuple[Kind, Conversation, float]:
    where = f"line {number}"
    if not isinstance(item, dict) or set(item) != {"kind", "expires_at", "conversation"}:
        raise UnreadableSnapshot(f"holds something other than a conversation ({where})")
    if item["kind"] not in _KINDS:
        raise UnreadableSnapshot(f"holds a conversation of an unknown kind {item['kind']!r} ({where})")
    expires = item["expires_at"]
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        raise UnreadableSnapshot(f"holds a conversation whose expires_at is not a number ({where})")
    record = item["conversation"]
    if not isinstance(record, dict) or set(record) != set(_FIELDS):
        raise UnreadableSnapshot(f"holds a conversation without the expected fields ({where})")
    for name, kind in _FIELD_TYPES.items():
        if not isinstance(record[name], kind) or (kind is int and isinstance(record[name], bool)):
            raise UnreadableSnapshot(f"holds a conversation whose {name} is not {kind.__name__} ({where})")
    for message in record["messages"]:
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            raise UnreadableSnapshot(f"holds a conversation with a malformed message ({where})")
    return _KINDS[item["kind"]], Conversation(**record), float(expires)


def _usage(usage: Any) -> dict[str, Any]:
    if not (
        isinstance(usage, dict)
        and all(_is_int(usage.get(name)) for name in _STATS_INTS)
        and isinstance(usage.get("by_model"), dict)
        and all(
            isinstance(entry, dict) and set(entry) == _MODEL_INTS and all(map(_is_int, entry.values()))
            for entry in usage["by_model"].values()
        )
        and isinstance(usage.get("errors_by_kind"), dict)
        and all(map(_is_int, usage["errors_by_kind"].values()))
    ):
        raise UnreadableSnapshot("holds malformed usage figures")
    return usage


def set_aside(path: Path) -> Path:
    """Rename an unusable snapshot to `<name>.bad-<UTC time>`, never over an earlier one."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while os.path.lexists(target):
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
        n += 1
    os.rename(path, target)
    return target


def remove_leftovers(path: Path) -> None:
    """Temporary files of a save that a crash interrupted (only this process writes them: it holds the
    lock)."""
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


# The lock ------------------------------------------------------------------------------------------


async def hold_lock(path: Path) -> int:
    """Take `<path>.lock` (waiting up to LOCK_WAIT_SECONDS for a process being replaced); its fd."""
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CannotStart(f"STORE_SNAPSHOT_PATH {path}: cannot create {lock_path} ({exc.strerror})") from None
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise CannotStart(
                    f"STORE_SNAPSHOT_PATH {path} is in use by another process (it holds {lock_path}): "
                    "every process needs a snapshot file of its own; to share conversations between "
                    "processes, use REDIS_URL"
                ) from None
            await asyncio.sleep(0.1)
        except OSError as exc:  # a file system without locks: run, but say so
            logger.warning("cannot lock %s (%s): make sure no other process uses it", lock_path, exc.strerror)
            return fd


# The saver -----------------------------------------------------------------------------------------


class Snapshotter:
    """Loads the snapshot into the store at start-up, saves it on a timer when it changed, and at stop."""

    def __init__(self, store: LocalStore, path: Path, interval: float) -> None:
        self.store = store
        self.path = path
        self.interval = interval
        self.last_write_at: str | None = None
        self.last_write_bytes: int | None = None
        self.last_error: str | None = None
        self.restored_conversations: int | None = None
        self.set_aside_to: str | None = None
        self._saved_changes = -1  # never saved: the first save writes whatever the store holds
        self._writable = True
        self._lock_fd: int | None = None
        self._saving = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._lock_fd = await hold_lock(self.path)
        remove_leftovers(self.path)
        await self.load()
        self._saved_changes = self.store.changes
        self._timer = asyncio.create_task(self._save_every_interval(), name="store-snapshot")

    async def stop(self) -> None:
        self._stopping.set()
        if self._timer is not None:
            await self._timer
        if await self.save():
            logger.info("store snapshot saved at shutdown: %s (%d bytes)", self.path, self.last_write_bytes)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    async def load(self) -> None:
        try:
            # On the loop, blocking it: nothing is served before start-up ends.
            restored = load_snapshot(self.store, self.path, time.time())
        except UnreadableSnapshot as exc:
            self.store.reset()  # whatever came before the fault goes too: no guessing
            self._refuse(str(exc))
            return
        if restored is None:
            logger.info("no store snapshot at %s yet: starting with no conversations", self.path)
            return
        self.restored_conversations = restored.conversations
        logger.info(
            "store snapshot loaded from %s: %d conversations and %d stored responses or conversation "
            "metadata (left out: %d expired, %d over the cap)",
            self.path,
            restored.conversations,
            restored.records,
            restored.expired,
            restored.over_cap,
        )

    def _refuse(self, reason: str) -> None:
        try:
            aside = set_aside(self.path)
        except OSError as exc:
            # Saving would overwrite it: saving stays off until someone moves it.
            self._writable = False
            self.last_error = f"{self.path} could not be moved aside ({exc.strerror}); not saving"
            where = f"it could not be moved aside ({exc.strerror}), so no snapshot will be saved over it"
        else:
            self.set_aside_to = str(aside)
            where = f"it was moved aside to {aside}"
        logger.error(
            "store snapshot %s %s: starting with no conversations; %s",
            self.path,
            reason.replace("\n", " "),
            where,
        )

    async def _save_every_interval(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
                return
            except TimeoutError:
                await self.save()

    async def save(self) -> bool:
        """Save the store if it changed since the last save; whether a snapshot was written."""
        async with self._saving:
            if self.store.changes == self._saved_changes or not self._writable:
                return False
            contents = self.store.contents()
            try:
                size = await asyncio.to_thread(write_snapshot, self.store, contents, self.path)
            except Exception as exc:
                self._failed(exc)
                return False
        self._saved_changes = contents.changes
        self.last_write_at = utc_now_iso()
        self.last_write_bytes = size
        if self.last_error is not None:
            logger.info("store snapshot saved to %s again", self.path)
            self.last_error = None
        return True

    def _failed(self, exc: Exception) -> None:
        # A full or failing disk is the operator's to fix (one line); anything else is our bug.
        if isinstance(exc, OSError):
            error, trace = f"{type(exc).__name__}: {exc.strerror or exc}", None
        else:
            error, trace = f"{type(exc).__name__}: {exc}", exc
        if error != self.last_error:  # once per distinct failure, not every interval
            logger.error("store snapshot could not be saved to %s: %s", self.path, error, exc_info=trace)
        self.last_error = error

    def status(self) -> dict[str, Any]:
        return {
            "enabled": True,
            "path": str(self.path),
            "interval_seconds": self.interval,
            "last_write_at": self.last_write_at,
            "last_write_bytes": self.last_write_bytes,
            "last_error": self.last_error,
            "restored_conversations": self.restored_conversations,
            "set_aside_to": self.set_aside_to,
        }


# The process's saver, started and stopped by the ASGI lifespan -------------------------------------

_active: Snapshotter | None = None


async def start() -> None:
    """Lifespan start-up: load the snapshot and start saving, when STORE_SNAPSHOT_PATH asks for it."""
    global _active
    if not settings.STORE_SNAPSHOT_PATH:
        return
    if settings.REDIS_URL:
        logger.warning(
            "STORE_SNAPSHOT_PATH is not used: REDIS_URL is set, so conversations live in Redis and their "
            "durability is Redis's own (its appendonly setting)"
        )
        return
    store = get_store()
    if not isinstance(store, LocalStore):  # pragma: no cover - get_store gives Redis only with REDIS_URL
        return
    saver = Snapshotter(store, Path(settings.STORE_SNAPSHOT_PATH), settings.STORE_SNAPSHOT_INTERVAL)
    await saver.start()
    _active = saver


async def stop() -> None:
    """Lifespan shutdown: the last save, then the lock goes."""
    global _active
    if _active is not None:
        await _active.stop()
        _active = None


def status() -> dict[str, Any]:
    """What /api/hf/status shows."""
    if _active is not None:
        return _active.status()
    return {
        "enabled": False,
        "path": None,
        "interval_seconds": None,
        "last_write_at": None,
        "last_write_bytes": None,
        "last_error": None,
        "restored_conversations": None,
        "set_aside_to": None,
    }


def _trim(conversation: Conversation, max_messages: int) -> None:
    """A saved conversation over today's CONVERSATION_MAX_MESSAGES keeps its newest messages, never
    starting with a reply."""
    excess = len(conversation.messages) - max_messages
    if excess <= 0:
        return
    kept = conversation.messages[excess:]
    while kept and kept[0].get("role") == "assistant":
        kept = kept[1:]
    conversation.dropped_messages += len(conversation.messages) - len(kept)
    conversation.messages = kept
    conversation.message_count = len(kept)
