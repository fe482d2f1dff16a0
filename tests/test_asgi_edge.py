"""The ASGI edge (config/edge.py): no thread per request, and loud start-up checks of what its bend of
Django relies on."""

from __future__ import annotations

import gc
import inspect
import threading
from typing import Any
from unittest import mock

import django
import django.core.handlers.asgi as django_asgi
import httpx
import pytest
from django.core import signals
from django.core.exceptions import ImproperlyConfigured

from config import edge
from config.asgi import application


async def test_it_starts_no_thread_per_request() -> None:
    # Django's test client reconnects its database signal receivers after each request it makes;
    # a served process has only the start-up state, which this restores.
    edge.prepare_django()
    transport = httpx.ASGITransport(app=application)
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(3):  # anything started once (a shared pool) starts here
            assert (await client.get("/health")).status_code == 200
        with mock.patch.object(threading.Thread, "start", counting_start):
            for _ in range(50):
                assert (await client.get("/health")).status_code == 200
                assert (await client.post("/memory-chat/message", json={"message": "hi"})).status_code == 200
    assert started == []


async def test_it_leaves_no_reference_cycle_per_request() -> None:
    """Django's RequestAborted, raised after every answer, kept each request (its body, its answer) in a
    reference cycle until a full collection; the edge holds that disconnect back."""
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for _ in range(3):
            assert (await client.post("/memory-chat/message", json={"message": "warm"})).status_code == 200
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(5):
                assert (
                    await client.post("/memory-chat/message", json={"message": "x" * 1000})
                ).status_code == 200
            gc.collect()
            kinds = {type(o).__name__ for o in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert not kinds & {"ASGIRequest", "HttpResponse", "RequestAborted"}, kinds


def test_it_refuses_a_django_that_no_longer_cancels_its_listener() -> None:
    source = inspect.getsource(django_asgi.ASGIHandler.handle).replace("task.cancel()", "pass")
    with mock.patch.object(edge.inspect, "getsource", return_value=source):
        with pytest.raises(ImproperlyConfigured, match="disconnect listener"):
            edge.prepare_django()


def test_it_closes_responses_inline() -> None:
    assert getattr(django_asgi, "sync_to_async") is edge._inline_response_close  # noqa: B009


def test_it_refuses_another_django_version() -> None:
    with mock.patch.object(django, "VERSION", (6, 0, 0, "final", 0)):
        with pytest.raises(ImproperlyConfigured, match="written for Django"):
            edge.prepare_django()


def test_it_refuses_a_request_finished_receiver_it_does_not_know() -> None:
    def blocking_receiver(**kwargs: Any) -> None:
        return None

    signals.request_finished.connect(blocking_receiver)
    try:
        with pytest.raises(ImproperlyConfigured, match="blocking_receiver"):
            edge.prepare_django()
    finally:
        signals.request_finished.disconnect(blocking_receiver)


def test_it_refuses_a_django_whose_handler_changed() -> None:
    with mock.patch.object(edge.inspect, "getsource", return_value="async def handle(): ..."):
        with pytest.raises(ImproperlyConfigured, match="no longer closes responses"):
            edge.prepare_django()


def test_it_remembers_the_match_of_a_path_without_parameters_only() -> None:
    from django.test import RequestFactory
    from django.urls import get_resolver

    handler = edge.Handler()
    factory = RequestFactory()
    remembered = get_resolver().__dict__.setdefault("gateway_static", {})
    remembered.clear()
    first = handler.resolve_request(factory.post("/v1/chat/completions"))
    again = factory.post("/v1/chat/completions")
    assert handler.resolve_request(again) is first and again.resolver_match is first
    one = handler.resolve_request(factory.get("/chat/conversations/one"))
    two = handler.resolve_request(factory.get("/chat/conversations/two"))
    assert (one.kwargs, two.kwargs) == ({"conversation_id": "one"}, {"conversation_id": "two"})
    for probe in ("/no/such/path", "/no/such/path", "/v1/chat/completions/"):
        assert handler.resolve_request(factory.get(probe)).route == "^.*$"  # the catch-all: a 404
    assert set(remembered) == {"/v1/chat/completions"}
