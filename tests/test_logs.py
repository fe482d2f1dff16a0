"""/api/hf/logs serves this process's real log records: newest last, as many as asked, filtered by level,
each with its time, level and message; a chat call's access line is there, without the key."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.test import AsyncClient

from config.asgi import application
from tests.answers import assert_iso
from tests.conftest import SECRET

ADMIN = "adm-logs-0123456789abcdef"


async def test_it_returns_real_records_newest_last(client: AsyncClient) -> None:
    logging.getLogger("tests.logs").warning("first marker")
    logging.getLogger("tests.logs").error("second marker")
    logs = (await client.get("/api/hf/logs?limit=2")).json()["logs"]
    assert [r["message"] for r in logs] == ["first marker", "second marker"]
    assert logs[1]["level"] == "ERROR" and logs[1]["logger"] == "tests.logs"


async def test_it_filters_by_level(client: AsyncClient) -> None:
    logging.getLogger("tests.logs").info("quiet marker")
    logging.getLogger("tests.logs").error("loud marker")
    logs = (await client.get("/api/hf/logs?level=error&limit=1000")).json()["logs"]
    assert logs and all(r["level"] in ("ERROR", "CRITICAL") for r in logs)
    assert "quiet marker" not in [r["message"] for r in logs]


async def test_it_logs_chat_calls_without_the_key(settings: Any) -> None:
    settings.ADMIN_API_KEYS = [ADMIN]  # an admin sees the access line's conversation id
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as gateway:
        response = await gateway.post("/chat/message", json={"message": "hi"})
        conversation_id = response.json()["conversation_id"]
        logs = (
            await gateway.get("/api/hf/logs?limit=50", headers={"Authorization": f"Bearer {ADMIN}"})
        ).json()["logs"]
    access = [
        r for r in logs if r["logger"] == "gateway.access" and r.get("conversation_id") == conversation_id
    ]
    assert len(access) == 1, [r["message"] for r in logs[-6:]]
    assert conversation_id in access[0]["message"]
    assert "chat" in access[0]["message"] and access[0]["level"] == "INFO"
    assert access[0]["status"] == 200 and access[0]["tokens"] == 19
    assert SECRET not in str(logs) and ADMIN not in str(logs)


async def test_it_rejects_a_bad_level(client: AsyncClient) -> None:
    response = await client.get("/api/hf/logs?level=LOUD")
    assert response.status_code == 422


async def test_it_gives_every_record_a_time_a_level_and_a_message(client: AsyncClient) -> None:
    logging.getLogger("tests.logs").info("shaped marker")
    logs = (await client.get("/api/hf/logs?limit=1000")).json()["logs"]
    assert logs and logs[-1]["message"] == "shaped marker"
    for record in logs:
        assert {"timestamp", "level", "message"} <= set(record)
        assert_iso(record["timestamp"])


async def test_it_limits_the_log_records(client: AsyncClient) -> None:
    logging.getLogger("tests.logs").warning("older marker")
    logging.getLogger("tests.logs").warning("newest marker")
    logs = (await client.get("/api/hf/logs?limit=1")).json()["logs"]
    assert [r["message"] for r in logs] == ["newest marker"]


async def test_it_keeps_errors_and_critical_records_at_level_error(client: AsyncClient) -> None:
    log = logging.getLogger("tests.logs")
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        log.log(level, "level marker %s", logging.getLevelName(level))
    logs = (await client.get("/api/hf/logs?level=ERROR&limit=1000")).json()["logs"]
    mine = [r["message"] for r in logs if r["message"].startswith("level marker")]
    assert mine[-2:] == ["level marker ERROR", "level marker CRITICAL"]
    assert "level marker INFO" not in mine and "level marker WARNING" not in mine
    assert logs and all(r["level"] in {"ERROR", "CRITICAL"} for r in logs)


async def test_a_long_path_is_logged_cut_short() -> None:
    """Each access line is kept twice in the ring buffer (message and fields), 1,000 of them: 60 KB
    paths of unthrottled 404s held 120 MB (review)."""
    from core import logbuffer

    transport = httpx.ASGITransport(app=application)
    path = "/unknown-" + "a" * 60_000
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as gateway:
        for _ in range(20):
            assert (await gateway.get(path)).status_code == 404
    lines = [r for r in logbuffer._records if "/unknown-aaa" in str(r.get("message"))]
    assert len(lines) == 20
    assert all(len(str(r)) < 4096 for r in lines)
    assert lines[-1]["path"] == path[:1024] + "..."


async def test_a_traceback_is_shown_to_no_one_but_an_admin(client: AsyncClient, settings: Any) -> None:
    """The public view scrubbed an error's message, not its traceback: code paths and the values in
    them went to anyone (review)."""
    try:
        raise ValueError("secret-ish detail")
    except ValueError:
        logging.getLogger("tests.logs").exception("traceback marker")
    public = (await client.get("/api/hf/logs?level=error&limit=5")).json()["logs"]
    marked = [r for r in public if r["message"] == "traceback marker"]
    assert marked and "exception" not in marked[-1] and "secret-ish" not in str(public)
    settings.ADMIN_API_KEYS = [ADMIN]
    admin = await client.get("/api/hf/logs?level=error&limit=5", headers={"Authorization": f"Bearer {ADMIN}"})
    shown = [r for r in admin.json()["logs"] if r["message"] == "traceback marker"]
    assert "secret-ish detail" in shown[-1]["exception"]
