"""The local store's snapshot, in process: what a file holds, how it is written, and how it is loaded."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from django.test import AsyncClient

from config.edge import Edge
from stores import Conversation, Kind, get_store, reset_store, snapshot
from stores.local import LocalStore


def pair(text: str, model: str = "m") -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": text, "timestamp": "t1"},
        {"role": "assistant", "content": f"re: {text}", "timestamp": "t2", "model": model},
    ]


async def filled_store() -> LocalStore:
    store = LocalStore()
    await store.append(Kind.CHAT, "c1", pair("one"), owner="anonymous", model="m1", tokens=19)
    await store.append(Kind.MEMORY, "m1", pair("echo"), owner="anonymous", model="echo", tokens=0)
    await store.append(Kind.CHAT, "c2", pair("two", "m2"), owner="anonymous", model="m2", tokens=7)
    await store.append(Kind.TEST, "t1", pair("test"), owner="anonymous", model="echo", tokens=0)
    await store.append(
        Kind.CHAT, "c1", pair("three"), owner="anonymous", model="m1", tokens=20
    )  # c1 is now the most recent
    await store.record_call("m1", prompt_tokens=24, completion_tokens=15, error=None)
    await store.record_call("m2", prompt_tokens=0, completion_tokens=0, error="upstream_timeout")
    return store


async def everything(store: LocalStore) -> dict[str, Any]:
    """Every conversation of every kind in recency order, and the usage figures."""
    kinds = {}
    for kind in Kind:
        _, page = await store.page(kind, owner=None, limit=1000, offset=0)
        kinds[kind] = [await store.get(kind, c.id, owner=c.owner) for c in page]
    return {"conversations": kinds, "usage": await store.usage()}


def save(store: LocalStore, path: Path) -> int:
    return snapshot.write_snapshot(store, store.contents(), path)


def read_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def fresh_store() -> LocalStore:
    reset_store()
    return LocalStore()


async def test_it_brings_back_every_conversation_field_order_and_figure(tmp_path: Path) -> None:
    store = await filled_store()
    before = await everything(store)
    save(store, tmp_path / "s")
    restored = fresh_store()
    assert (await everything(restored))["conversations"][Kind.CHAT] == []
    result = snapshot.load_snapshot(restored, tmp_path / "s", time.time())
    assert result == snapshot.Restored(conversations=4, expired=0, over_cap=0)
    assert await everything(restored) == before
    assert [c.id for c in before["conversations"][Kind.CHAT]] == ["c1", "c2"]


async def test_a_stored_response_comes_back_counted_against_its_quota(tmp_path: Path, settings: Any) -> None:
    settings.CLIENT_STORAGE_BYTES = 64 * 1024
    store = fresh_store()
    big = {"text": "x" * 24_000}
    await store.put_record(Kind.RESPONSE, "a1", big, owner="owner-a", quota_key="ip:a")
    await store.put_record(Kind.RESPONSE, "b1", big, owner="owner-b")  # counted against nobody's quota
    path = tmp_path / "s"
    save(store, path)
    assert [line.get("quota") for line in lines_of(path) if "record" in line] == ["ip:a", None]
    restored = fresh_store()
    snapshot.load_snapshot(restored, path, time.time())
    for name in ("a2", "a3"):
        await restored.put_record(Kind.RESPONSE, name, big, owner="owner-a", quota_key="ip:a")
    found = await restored.get_records(Kind.RESPONSE, ["a1", "a2", "a3"], owner="owner-a")
    assert [record is not None for record in found] == [False, True, True]
    assert await restored.get_records(Kind.RESPONSE, ["b1"], owner="owner-b") == [big]


async def test_it_reads_a_version_2_file_whose_records_name_no_quota(tmp_path: Path) -> None:
    store = fresh_store()
    await store.put_record(Kind.RESPONSE, "r1", {"n": 1}, owner="owner-a", quota_key="ip:a")
    path = tmp_path / "s"
    save(store, path)
    header, *rest = lines_of(path)
    write_lines(
        path, [{**header, "version": 2}, *({k: v for k, v in x.items() if k != "quota"} for x in rest)]
    )
    restored = fresh_store()
    assert snapshot.load_snapshot(restored, path, time.time()) == snapshot.Restored(0, 0, 0, records=1)
    assert await restored.get_records(Kind.RESPONSE, ["r1"], owner="owner-a") == [{"n": 1}]


async def test_it_brings_back_stored_responses_and_conversation_metadata(
    tmp_path: Path, settings: Any
) -> None:
    store = await filled_store()
    response = {"response": {"id": "resp_1", "output_text": "é"}, "items": [], "ancestors": []}
    await store.put_record(Kind.RESPONSE, "resp_1", response, owner="owner-a")
    await store.put_record(Kind.RESPONSE, "resp_2", {"n": 2}, owner="owner-b")
    await store.put_record(Kind.CHAT, "c1", {"metadata": {"topic": "x"}}, owner="anonymous")
    await store.put_record(Kind.RESPONSE, "resp_1", response, owner="owner-a")  # now the most recent
    await store.put_record(Kind.RESPONSE, "gone", {"n": 0}, owner="owner-a")
    assert await store.delete_record(Kind.RESPONSE, "gone", owner="owner-a") is True
    path = tmp_path / "s"
    save(store, path)
    *_, end = lines_of(path)
    assert end == {"end": True, "conversations": 4, "records": 3}
    restored = fresh_store()
    result = snapshot.load_snapshot(restored, path, time.time())
    assert result == snapshot.Restored(conversations=4, expired=0, over_cap=0, records=3)
    assert await restored.get_records(Kind.RESPONSE, ["resp_1", "resp_2"], owner="owner-a") == [
        response,
        None,
    ]
    assert await restored.get_records(Kind.RESPONSE, ["resp_2"], owner="owner-b") == [{"n": 2}]
    assert await restored.get_records(Kind.RESPONSE, ["gone"], owner="owner-a") == [None]
    assert await restored.get_records(Kind.CHAT, ["c1"], owner="anonymous") == [{"metadata": {"topic": "x"}}]
    # the order of writing is kept: over CONVERSATION_MAX the least recently written goes first
    settings.CONVERSATION_MAX = 2
    await restored.put_record(Kind.RESPONSE, "resp_3", {"n": 3}, owner="owner-a")
    assert await restored.get_records(Kind.RESPONSE, ["resp_2"], owner="owner-b") == [None]
    assert await restored.get_records(Kind.RESPONSE, ["resp_1"], owner="owner-a") == [response]


async def test_it_leaves_out_expired_records_and_keeps_their_caps(tmp_path: Path, settings: Any) -> None:
    store = LocalStore()
    for n in range(4):
        await store.put_record(Kind.RESPONSE, f"r{n}", {"n": n}, owner="anonymous")
    path = tmp_path / "s"
    save(store, path)
    items = lines_of(path)
    items[1]["expires_at"] = time.time() - 1  # r0 expired while the service was stopped
    write_lines(path, items)
    settings.CONVERSATION_MAX = 2
    settings.CONVERSATION_TTL = 100
    restored = fresh_store()
    result = snapshot.load_snapshot(restored, path, time.time())
    assert result == snapshot.Restored(conversations=0, expired=0, over_cap=0, records=2)
    found = await restored.get_records(Kind.RESPONSE, ["r0", "r1", "r2", "r3"], owner="anonymous")
    assert found == [None, None, {"n": 2}, {"n": 3}]
    assert all(
        expiry - time.monotonic() <= 100 for _, expiry, _ in restored.contents().records[Kind.RESPONSE]
    )


async def test_it_reads_a_version_1_file(tmp_path: Path) -> None:
    path = tmp_path / "s"
    save(await filled_store(), path)
    header, *conversations, _end = lines_of(path)
    write_lines(path, [{**header, "version": 1}, *conversations, {"end": True, "conversations": 4}])
    result = snapshot.load_snapshot(fresh_store(), path, time.time())
    assert result == snapshot.Restored(conversations=4, expired=0, over_cap=0, records=0)


def lines_of(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def write_lines(path: Path, items: list[Any]) -> None:
    path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items))


async def test_it_writes_a_versioned_file_only_its_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "conversations.snapshot"
    size = save(await filled_store(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == size
    header, *records, end = lines_of(path)
    assert (header["format"], header["version"]) == (snapshot.FORMAT, snapshot.VERSION)
    assert header["usage"]["requests"] == 2 and end == {"end": True, "conversations": 4, "records": 0}
    assert [(r["kind"], r["conversation"]["id"]) for r in records] == [
        ("chat", "c2"),
        ("chat", "c1"),
        ("memory", "m1"),
        ("test", "t1"),
    ]
    assert set(records[0]["conversation"]) == {f.name for f in fields(Conversation)}
    assert abs(records[0]["expires_at"] - (time.time() + 86400)) < 60  # wall-clock time, not monotonic
    assert os.listdir(tmp_path) == ["conversations.snapshot"]  # no temporary file left


async def test_it_leaves_out_expired_conversations_and_caps_the_rest(tmp_path: Path, settings: Any) -> None:
    store = LocalStore()
    for n in range(5):
        await store.append(
            Kind.MEMORY, f"m{n}", pair(f"a{n}") + pair(f"b{n}"), owner="anonymous", model="echo", tokens=0
        )
    path = tmp_path / "s"
    save(store, path)
    items = lines_of(path)
    items[1]["expires_at"] = time.time() - 1  # m0 expired while the service was stopped
    write_lines(path, items)
    settings.CONVERSATION_MAX = 3
    settings.CONVERSATION_MAX_MESSAGES = 2
    settings.CONVERSATION_TTL = 100
    restored = fresh_store()
    result = snapshot.load_snapshot(restored, path, time.time())
    assert result == snapshot.Restored(conversations=3, expired=1, over_cap=1)
    _, page = await restored.page(Kind.MEMORY, owner=None, limit=10, offset=0)
    assert [c.id for c in page] == ["m4", "m3", "m2"]
    assert [m["content"] for m in page[0].messages] == ["b4", "re: b4"]
    assert page[0].dropped_messages == 2 and page[0].message_count == 2
    assert all(
        expiry - time.monotonic() <= 100
        for expiry in (e.expires for e in restored._kinds[Kind.MEMORY].values())
    )


def bad_files() -> dict[str, bytes]:
    usage = {"requests": 1, "errors": 0, "evictions": 0, "by_model": {}, "errors_by_kind": {}}
    header = {"format": snapshot.FORMAT, "version": 1, "written_at": "t", "usage": usage}
    conversation = {f.name: f.default for f in fields(Conversation) if f.name != "messages"}
    conversation |= {"id": "c", "created_at": "t", "updated_at": "t", "model": "m", "messages": pair("x")}
    record = {"kind": "chat", "expires_at": time.time() + 3600, "conversation": conversation}
    end = {"end": True, "conversations": 1}
    saved_record = {
        "kind": "response",
        "slot": "anonymous/resp_1",
        "expires_at": time.time() + 3600,
        "record": {"response": {"id": "resp_1"}},
    }

    def lines(*items: Any) -> bytes:
        return b"".join(orjson.dumps(item) + b"\n" for item in items)

    whole = lines(header, record, end)
    return {
        "empty": b"",
        "garbage": b"\x00\x01 not json\n",
        "not a snapshot": lines({"hello": "world"}),
        "newer version": lines({**header, "version": snapshot.VERSION + 1}, end),
        "cut short": lines(header, record),
        "cut mid-line": whole[: len(lines(header)) + 40],
        "wrong count": lines(header, record, {"end": True, "conversations": 2}),
        "after the end": whole + lines(record),
        "bad usage": lines({**header, "usage": {"requests": "many"}}, end),
        "unknown kind": lines(header, record | {"kind": "voice"}, end),
        "bad conversation": lines(
            header, record | {"conversation": conversation | {"total_tokens": "9"}}, end
        ),
        "bad record": lines(header, record, saved_record | {"slot": 7}, end | {"records": 1}),
        "record not an object": lines(header, saved_record | {"record": [1]}, {**end, "records": 1}),
        "record's quota not a string": lines(header, saved_record | {"quota": 7}, {**end, "records": 1}),
        "record with an unknown field": lines(header, saved_record | {"owner": "x"}, {**end, "records": 1}),
        "conversation after records": lines(header, saved_record, record, end | {"records": 1}),
        "records miscounted": lines(header, record, saved_record, end | {"records": 2}),
    }


@pytest.mark.parametrize("case", list(bad_files()))
async def test_it_starts_empty_and_sets_aside_a_file_it_cannot_use(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "conversations.snapshot"
    content = bad_files()[case]
    path.write_bytes(content)
    store = LocalStore()
    saver = snapshot.Snapshotter(store, path, 30)
    with caplog.at_level(logging.INFO, logger="stores.snapshot"):
        await saver.load()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert str(path) in line and "starting with no conversations" in line and "\n" not in line
    if case == "newer version":
        newer, ours = snapshot.VERSION + 1, snapshot.VERSION
        assert f"newer format version ({newer}; this service reads up to {ours})" in line
    assert not path.exists()
    aside = saver.set_aside_to
    assert aside is not None and Path(aside).name.startswith("conversations.snapshot.bad-")
    assert aside in line and read_bytes(aside) == content
    assert all([await store.count(kind) == 0 for kind in Kind])  # even what came before the fault
    assert (await store.usage())["requests"] == 0


async def test_it_checks_a_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "s"
    save(await filled_store(), path)
    assert snapshot.check_snapshot(path) == 4
    for content in bad_files().values():
        path.write_bytes(content)
        with pytest.raises(snapshot.UnreadableSnapshot):
            snapshot.check_snapshot(path)


async def test_it_never_sets_a_bad_file_aside_over_an_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "s"
    names = set()
    for n in range(3):
        path.write_bytes(b"bad %d" % n)
        names.add(snapshot.set_aside(path))
    assert len(names) == 3
    assert sorted(p.read_bytes() for p in names) == [b"bad 0", b"bad 1", b"bad 2"]


async def test_it_saves_only_when_something_changed(tmp_path: Path) -> None:
    store = LocalStore()
    saver = snapshot.Snapshotter(store, tmp_path / "s", 3600)
    await saver.start()
    try:
        assert await saver.save() is False
        await store.append(Kind.MEMORY, "a", pair("x"), owner="anonymous", model="echo", tokens=0)
        assert store.changes == 1
        assert await saver.save() is True
        assert await saver.save() is False
        await store.record_call("m", prompt_tokens=1, completion_tokens=1, error=None)
        assert await saver.save() is True
        assert await store.delete(Kind.MEMORY, "missing", owner="anonymous") is False
        assert await saver.save() is False
        await store.clear(Kind.MEMORY, owner="anonymous")
        assert await saver.save() is True
        await store.put_record(Kind.RESPONSE, "resp_1", {"n": 1}, owner="anonymous")
        assert await saver.save() is True
        assert await store.delete_record(Kind.RESPONSE, "missing", owner="anonymous") is False
        assert await saver.save() is False
        assert await store.delete_record(Kind.RESPONSE, "resp_1", owner="anonymous") is True
        assert await saver.save() is True
    finally:
        await saver.stop()


async def test_it_saves_on_its_timer_and_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "s"
    store = LocalStore()
    saver = snapshot.Snapshotter(store, path, 0.1)
    await saver.start()
    await store.append(Kind.CHAT, "timer", pair("x"), owner="anonymous", model="m", tokens=1)
    for _ in range(250):
        if path.exists():
            break
        await asyncio.sleep(0.02)
    assert [r["conversation"]["id"] for r in lines_of(path)[1:-1]] == ["timer"]
    await store.append(Kind.CHAT, "at-stop", pair("y"), owner="anonymous", model="m", tokens=1)
    await saver.stop()
    assert snapshot.check_snapshot(path) == 2


async def test_it_removes_a_crashed_saves_temporary_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "conversations.snapshot"
    leftover = tmp_path / ".conversations.snapshot.x1y2z3.tmp"
    leftover.write_bytes(b'{"format": "half')
    other = tmp_path / ".someone-elses.tmp"
    other.write_bytes(b"")
    saver = snapshot.Snapshotter(LocalStore(), path, 3600)
    await saver.start()
    await saver.stop()
    assert not leftover.exists() and other.exists()


async def test_it_reports_a_failed_save_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore()
    saver = snapshot.Snapshotter(store, tmp_path / "s", 3600)
    await store.append(Kind.CHAT, "a", pair("x"), owner="anonymous", model="m", tokens=1)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch("stores.snapshot.write_snapshot", side_effect=full), caplog.at_level(logging.ERROR):
        assert await saver.save() is False
        assert await saver.save() is False
    assert saver.last_error == "OSError: No space left on device"
    assert len([r for r in caplog.records if r.name == "stores.snapshot"]) == 1
    assert caplog.records[0].exc_info is None  # one line: the disk is the operator's to fix
    assert await saver.save() is True
    assert saver.last_error is None and saver.last_write_bytes == (tmp_path / "s").stat().st_size


async def test_it_refuses_a_file_another_process_holds(tmp_path: Path) -> None:
    path = tmp_path / "s"
    held = await snapshot.hold_lock(path)
    try:
        with (
            mock.patch("stores.snapshot.LOCK_WAIT_SECONDS", 0.2),
            pytest.raises(snapshot.CannotStart) as refused,
        ):
            await snapshot.hold_lock(path)
        assert "STORE_SNAPSHOT_PATH" in str(refused.value) and "REDIS_URL" in str(refused.value)
    finally:
        os.close(held)
    os.close(await snapshot.hold_lock(path))  # free again once the holder is gone


async def test_it_shows_the_snapshot_in_hf_status(client: AsyncClient, settings: Any, tmp_path: Path) -> None:
    off = (await client.get("/api/hf/status")).json()["snapshot"]
    assert off == dict.fromkeys(off, None) | {"enabled": False}
    path = tmp_path / "conversations.snapshot"
    settings.STORE_SNAPSHOT_PATH = str(path)
    settings.STORE_SNAPSHOT_INTERVAL = 3600.0
    await snapshot.start()
    try:
        started = (await client.get("/api/hf/status")).json()["snapshot"]
        assert started["enabled"] is True and started["path"] == str(path)
        assert started["last_write_at"] is None and started["restored_conversations"] is None
        await client.post("/memory-chat/message", {"message": "hi"}, content_type="application/json")
        assert snapshot._active is not None and await snapshot._active.save()
        shown = (await client.get("/api/hf/status")).json()["snapshot"]
        assert shown["last_write_bytes"] == path.stat().st_size and shown["last_error"] is None
        assert shown["last_write_at"].startswith("20") and shown["interval_seconds"] == 3600.0
    finally:
        await snapshot.stop()


async def test_it_leaves_snapshots_to_redis_when_redis_is_set(
    settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings.STORE_SNAPSHOT_PATH = str(tmp_path / "s")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with caplog.at_level(logging.INFO, logger="stores.snapshot"):
        await snapshot.start()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "REDIS_URL is set" in caplog.records[0].getMessage()
    assert snapshot.status()["enabled"] is False and not (tmp_path / "s.lock").exists()


async def test_it_reads_and_writes_conversations_off_the_event_loop(tmp_path: Path) -> None:
    store = await filled_store()
    saver = snapshot.Snapshotter(store, tmp_path / "s", 3600)
    threads: dict[str, set[int]] = {"contents": set(), "read": set(), "write": set()}
    real_contents, real_read, real_write = store.contents, store.read, snapshot.write_snapshot

    def spy(name: str, real: Any) -> Any:
        def call(*args: Any) -> Any:
            threads[name].add(threading.get_ident())
            return real(*args)

        return call

    with (
        mock.patch.object(store, "contents", spy("contents", real_contents)),
        mock.patch.object(store, "read", spy("read", real_read)),
        mock.patch("stores.snapshot.write_snapshot", spy("write", real_write)),
    ):
        assert await saver.save()
    loop_thread = threading.get_ident()
    assert threads["contents"] == {loop_thread}  # the one cheap step on the loop
    assert threads["read"] == threads["write"] and loop_thread not in threads["read"]


async def test_it_shows_a_save_that_fails_when_the_folder_goes_away(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    store = LocalStore()
    saver = snapshot.Snapshotter(store, folder / "s", 3600)
    await store.append(Kind.CHAT, "a", pair("x"), owner="anonymous", model="m", tokens=1)
    folder.rmdir()
    assert await saver.save() is False
    assert saver.last_error == "FileNotFoundError: No such file or directory"
    assert snapshot.status()["last_error"] is None  # only the process's own saver is shown
    folder.mkdir()
    assert await saver.save() is True and saver.last_error is None


async def lifespan(*events: str) -> list[dict[str, Any]]:
    """Drive the ASGI edge's lifespan through `events`; what it sent back."""
    incoming = [{"type": f"lifespan.{event}"} for event in events]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await Edge.lifespan(receive, send)
    return sent


async def test_it_loads_at_lifespan_startup_and_saves_at_shutdown(settings: Any, tmp_path: Path) -> None:
    path = tmp_path / "conversations.snapshot"
    save(await filled_store(), path)
    reset_store()
    settings.STORE_SNAPSHOT_PATH = str(path)
    settings.STORE_SNAPSHOT_INTERVAL = 3600.0
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(dict(message))
        answered.set()

    running = asyncio.create_task(Edge.lifespan(incoming.get, send))
    await incoming.put({"type": "lifespan.startup"})
    await asyncio.wait_for(answered.wait(), 10)
    assert sent == [{"type": "lifespan.startup.complete"}]
    store = get_store()
    assert await store.count(Kind.CHAT) == 2 and (await store.usage())["requests"] == 2
    await store.append(Kind.MEMORY, "after-start", pair("new"), owner="anonymous", model="echo", tokens=0)
    await incoming.put({"type": "lifespan.shutdown"})
    await running
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
    assert snapshot.check_snapshot(path) == 5 and snapshot._active is None


async def test_it_refuses_to_start_when_loading_fails_unexpectedly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with mock.patch("stores.snapshot.start", side_effect=RuntimeError("a bug")):
        sent = await lifespan("startup")
    assert sent == [{"type": "lifespan.startup.failed", "message": "start-up failed (see above)"}]
    assert "a bug" in caplog.text
