"""Conversations survive a restart: the service as a real uvicorn process, stopped with SIGTERM or killed
with SIGKILL, started again on the same snapshot file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stores import snapshot
from tests.conftest import ROOT, SECRET, LiveServer, free_port
from tests.fake_upstream import FakeUpstream, Reply

OWNERS = ("owner-a", "owner-b", "owner-c")
ADMIN = "admin-snapshot-0123456789"  # sees every owner's conversations


def snapshot_env(fake: FakeUpstream, path: Path, **extra: str) -> dict[str, str]:
    return {
        "LLM_BASE_URL": fake.url,
        "LLM_API_KEY": SECRET,
        "LLM_MAX_RETRIES": "0",
        "RATE_LIMIT": "0",
        "REDIS_URL": "",
        "BACKEND_API_KEYS": ",".join(OWNERS),
        "ADMIN_API_KEYS": ADMIN,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "text",
        "STORE_SNAPSHOT_PATH": str(path),
        "STORE_SNAPSHOT_INTERVAL": "3600",
        **extra,
    }


def client(server: LiveServer, owner: str = OWNERS[0]) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {owner}"}, timeout=30)


def everything(server: LiveServer) -> dict[str, Any]:
    """Every conversation body, both lists (recency order) and the usage figures, as an admin sees them."""
    with client(server, ADMIN) as http:
        lists = {
            prefix: http.get(f"/{prefix}/conversations?limit=500").json()
            for prefix in ("chat", "memory-chat")
        }
        bodies = {
            (prefix, c["owner"], c["id"]): http.get(
                f"/{prefix}/conversations/{c['id']}", params={"owner": c["owner"]}
            ).json()
            for prefix, listed in lists.items()
            for c in listed["conversations"]
        }
        health = http.get("/chat/health").json()
        status = http.get("/api/hf/status").json()
    return {
        "lists": lists,
        "bodies": bodies,
        "usage": health["usage"],
        "status_usage": status["usage"],
        "active": status["active_conversations"],
    }


def snapshot_status(server: LiveServer) -> dict[str, Any]:
    with client(server) as http:
        return dict(http.get("/api/hf/status").json()["snapshot"])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.snapshot"


def test_it_finds_every_conversation_again_after_sigterm(
    fake_upstream: FakeUpstream, path: Path, tmp_path: Path
) -> None:
    env = snapshot_env(fake_upstream, path)  # an hour's interval: only the shutdown save can do it
    server = LiveServer(env, log=tmp_path / "first.log")
    clients = [client(server, owner) for owner in OWNERS]
    try:
        for turn in range(4):
            for n in range(25):
                http = clients[n % len(OWNERS)]
                model = ("openai/gpt-4o-mini", "fake/alpha")[n % 2]
                chat = http.post(
                    "/chat/message",
                    json={"message": f"chat {n} turn {turn}", "conversation_id": f"chat-{n}", "model": model},
                )
                assert chat.status_code == 200, chat.text
                memory = http.post(
                    "/memory-chat/message",
                    json={"message": f"memory {n} turn {turn}", "conversation_id": f"memory-{n}"},
                )
                assert memory.status_code == 200, memory.text
        fake_upstream.queue(Reply(status=500))
        assert clients[1].post("/chat/message", json={"message": "fails"}).status_code == 502
        before = everything(server)
    finally:
        for http in clients:
            http.close()
        output = server.stop()
    assert "store snapshot saved at shutdown" in output
    assert before["lists"]["chat"]["total"] == 25 and before["lists"]["memory-chat"]["total"] == 25
    chat_7 = [
        body for (prefix, _, cid), body in before["bodies"].items() if (prefix, cid) == ("chat", "chat-7")
    ]
    assert len(chat_7) == 1 and chat_7[0]["conversation"]["message_count"] == 8
    assert before["usage"]["requests"] == 101 and before["usage"]["errors"] == 1
    assert before["usage"]["total_tokens"] == 100 * 19
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    again = LiveServer(env, log=tmp_path / "second.log")
    try:
        after = everything(again)
        restored = snapshot_status(again)
    finally:
        again.stop()
    assert after == before
    assert restored["restored_conversations"] == 50 and restored["set_aside_to"] is None


def test_it_loses_at_most_the_last_interval_when_killed(
    fake_upstream: FakeUpstream, path: Path, tmp_path: Path
) -> None:
    interval = 1.0
    env = snapshot_env(fake_upstream, path, STORE_SNAPSHOT_INTERVAL=str(interval))
    server = LiveServer(env, log=tmp_path / "first.log")
    sent: dict[str, list[tuple[str, float]]] = {f"k{n}": [] for n in range(5)}
    with client(server) as http:
        started = time.monotonic()
        turn = 0
        while time.monotonic() - started < 3.5:
            conversation_id = f"k{turn % 5}"
            text = f"turn {turn}"
            response = http.post(
                "/memory-chat/message", json={"message": text, "conversation_id": conversation_id}
            )
            assert response.status_code == 200
            sent[conversation_id].append((text, time.monotonic()))
            turn += 1
            time.sleep(0.01)
    killed_at = time.monotonic()
    server.kill()

    again = LiveServer(env, log=tmp_path / "second.log")
    try:
        with client(again) as http:
            kept = {
                conversation_id: [
                    m["content"]
                    for m in http.get(f"/memory-chat/conversations/{conversation_id}")
                    .json()
                    .get("conversation", {"messages": []})["messages"]
                    if m["role"] == "user"
                ]
                for conversation_id in sent
            }
    finally:
        again.stop()
    slack = 1.0  # the save itself and a busy machine's scheduling
    for conversation_id, turns in sent.items():
        texts = [text for text, _ in turns]
        assert kept[conversation_id] == texts[: len(kept[conversation_id])]  # no holes, nothing half
        must_have = [text for text, acknowledged in turns if acknowledged < killed_at - interval - slack]
        assert kept[conversation_id][: len(must_have)] == must_have
    assert sum(map(len, kept.values())) > 0


def temporary_files(path: Path) -> list[str]:
    return [n for n in os.listdir(path.parent) if n.startswith(f".{path.name}.") and n.endswith(".tmp")]


def kill_during_a_save(server: LiveServer, path: Path, http: httpx.Client) -> bool:
    """Keep changing the store until a save is under way, then SIGKILL; whether it was caught mid-save."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        http.post("/memory-chat/message", json={"message": "small", "conversation_id": "ticker"})
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            if temporary_files(path):
                server.kill()
                return bool(temporary_files(path))
            time.sleep(0.0005)
    raise AssertionError("no save started")


def test_it_always_finds_a_complete_snapshot_after_kills_during_saves(
    fake_upstream: FakeUpstream, path: Path, tmp_path: Path
) -> None:
    env = snapshot_env(fake_upstream, path, STORE_SNAPSHOT_INTERVAL="0.2")
    big = "x" * 30_000
    caught_mid_save = 0
    expected = 0
    for round_ in range(5):
        server = LiveServer(env, log=tmp_path / f"round-{round_}.log")
        try:
            status = snapshot_status(server)
            with client(server) as http:
                count = http.get("/memory-chat/conversations?limit=1").json()["total"]
                assert not temporary_files(path)  # a crashed save's leftover is gone
                if round_ == 0:
                    for n in range(150):  # about 9 MB of snapshot
                        body = {"message": big, "conversation_id": f"big-{n}"}
                        assert http.post("/memory-chat/message", json=body).status_code == 200
                else:
                    assert status["set_aside_to"] is None and status["restored_conversations"] == expected
                    assert count == expected
                caught_mid_save += kill_during_a_save(server, path, http)
        finally:
            if server.process.poll() is None:
                server.kill()
        assert "ERROR" not in server.output()
        previous, expected = expected, snapshot.check_snapshot(path)  # the file at rest is whole
        assert expected >= max(previous, 1)  # the old complete snapshot or a newer complete one
    assert not [p for p in os.listdir(path.parent) if ".bad-" in p]
    assert caught_mid_save >= 1, "no kill landed while a save was being written"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"format": "llm-chat-gateway/store-snapshot", "version": 1, "usage": {"req', "is cut short"),
        (
            orjson.dumps({"format": snapshot.FORMAT, "version": 7, "usage": {}}) + b"\n",
            f"newer format version (7; this service reads up to {snapshot.VERSION})",
        ),
    ],
    ids=["corrupt", "newer-version"],
)
def test_it_starts_empty_and_moves_an_unusable_snapshot_aside(
    fake_upstream: FakeUpstream, path: Path, tmp_path: Path, content: bytes, reason: str
) -> None:
    path.write_bytes(content)
    log = tmp_path / "server.log"
    server = LiveServer(snapshot_env(fake_upstream, path), log=log)
    try:
        status = snapshot_status(server)
        with client(server) as http:
            assert http.get("/memory-chat/conversations").json()["total"] == 0
            assert http.post("/memory-chat/message", json={"message": "a new start"}).status_code == 200
    finally:
        server.stop()
    errors = [line for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert str(path) in errors[0] and reason in errors[0] and "starting with no conversations" in errors[0]
    aside = Path(status["set_aside_to"])
    assert aside.name.startswith("conversations.snapshot.bad-") and aside.read_bytes() == content
    assert status["restored_conversations"] is None
    assert snapshot.check_snapshot(path) == 1  # a fresh snapshot, saved next to the bad one


@pytest.fixture
def output_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "two-workers.log"


def test_it_refuses_two_workers_on_one_snapshot_path(
    fake_upstream: FakeUpstream, path: Path, output_file: Path
) -> None:
    env = {**os.environ, **snapshot_env(fake_upstream, path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(free_port())]
    with output_file.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", "2", "--no-access-log"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = output_file.read_text()
    assert "Configuration error: STORE_SNAPSHOT_PATH" in output
    assert "is in use by another process" in output and "use REDIS_URL" in output


def test_it_keeps_stored_responses_and_openai_conversations_across_a_restart(
    fake_upstream: FakeUpstream, path: Path, tmp_path: Path
) -> None:
    import openai

    env = snapshot_env(fake_upstream, path)  # an hour's interval: only the shutdown save can do it

    def sdk(server: LiveServer, owner: str = OWNERS[0]) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{server.url}/v1", api_key=owner, max_retries=0)

    server = LiveServer(env, log=tmp_path / "first.log")
    try:
        with sdk(server) as mine:
            first = mine.responses.create(model="openai/gpt-4o-mini", input="one")
            second = mine.responses.create(
                model="openai/gpt-4o-mini", input="two", previous_response_id=first.id
            )
            conversation = mine.conversations.create(metadata={"topic": "restart"})
            mine.responses.create(model="openai/gpt-4o-mini", input="hello", conversation=conversation.id)
            items_before = mine.conversations.items.list(conversation.id, order="asc").to_dict()
    finally:
        output = server.stop()
    assert "store snapshot saved at shutdown" in output

    again = LiveServer(env, log=tmp_path / "second.log")
    try:
        with sdk(again) as mine, sdk(again, OWNERS[1]) as other:
            assert mine.responses.retrieve(second.id).to_dict() == second.to_dict()
            third = mine.responses.create(
                model="openai/gpt-4o-mini", input="three", previous_response_id=second.id
            )
            assert mine.conversations.retrieve(conversation.id).metadata == {"topic": "restart"}
            assert mine.conversations.items.list(conversation.id, order="asc").to_dict() == items_before
            with pytest.raises(openai.NotFoundError):
                other.responses.retrieve(second.id)  # still nobody else's
            with pytest.raises(openai.NotFoundError):
                other.conversations.retrieve(conversation.id)
    finally:
        output = again.stop()
    assert third.output_text == "Fake reply to: three"
    assert [m["content"] for m in fake_upstream.completions()[-1].body["messages"]] == [
        "one",
        "Fake reply to: one",
        "two",
        "Fake reply to: two",
        "three",
    ]
    assert "1 conversations and 4 stored responses or conversation metadata" in output
