"""Two server processes on a real three-master Redis Cluster (REDIS_CLUSTER=true): a conversation
continues on the other process and no concurrent message is lost; the keys of one owner's
conversation and index share one slot, while different owners' spread over the cluster's nodes; a
script declared `#!lua` may reach no key outside its slot; a turn whose accounting broke off is counted
once it is sent again, and an eviction spares a conversation or record written since it was counted; a
single-node store pointed at a cluster's node says what to set."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import pytest
import redis

from core.errors import StoreUnavailable
from core.keys import fingerprint
from stores import Kind
from stores.base import RecordWrite
from stores.redis_cluster import RedisClusterStore
from stores.redis_store import RedisStore, _text
from stores.redis_wire import WireClient
from tests.conftest import SECRET, LiveServer, RedisCluster
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def two_servers(fake_upstream: FakeUpstream, redis_cluster: RedisCluster) -> Iterator[tuple[str, str]]:
    env = {
        "LLM_BASE_URL": fake_upstream.url,
        "LLM_API_KEY": SECRET,
        "REDIS_URL": redis_cluster.url,
        "REDIS_CLUSTER": "true",
        "LLM_MAX_RETRIES": "0",
        "RATE_LIMIT": "100000/minute",
        "CLIENT_TOKEN_BUDGET": "100000000/day",
    }
    first, second = LiveServer(env), LiveServer(env)
    yield first.url, second.url
    first.stop()
    second.stop()


def test_it_keeps_every_concurrent_message_across_processes(two_servers: tuple[str, str]) -> None:
    one, two = two_servers

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [
                client.post(
                    f"{(one, two)[n % 2]}/chat/message",
                    json={"message": f"msg-{n}", "conversation_id": "cluster-crowd"},
                )
                for n in range(50)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(post_all()) == [200] * 50
    conversation = httpx.get(f"{one}/chat/conversations/cluster-crowd").json()["conversation"]
    messages = conversation["messages"]
    assert conversation["message_count"] == 100 and len(messages) == 100
    for user, reply in zip(messages[::2], messages[1::2], strict=True):
        assert reply["content"] == f"Fake reply to: {user['content']}"
    assert sorted(m["content"] for m in messages[::2]) == sorted(f"msg-{n}" for n in range(50))


def test_it_continues_a_conversation_and_a_response_on_the_other_process(
    two_servers: tuple[str, str],
) -> None:
    one, two = two_servers
    assert (
        httpx.post(f"{one}/chat/message", json={"message": "a", "conversation_id": "hop"}).status_code == 200
    )
    assert (
        httpx.post(f"{two}/chat/message", json={"message": "b", "conversation_id": "hop"}).json()[
            "message_count"
        ]
        == 4
    )
    first = httpx.post(f"{one}/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "x"}).json()
    second = httpx.post(
        f"{two}/v1/responses",
        json={"model": "openai/gpt-4o-mini", "input": "y", "previous_response_id": first["id"]},
    )
    assert second.status_code == 200
    assert httpx.get(f"{one}/v1/responses/{second.json()['id']}").status_code == 200


def test_it_keeps_an_owners_keys_in_one_slot_and_spreads_owners_over_the_nodes(
    two_servers: tuple[str, str], redis_cluster: RedisCluster
) -> None:
    one, _ = two_servers
    tokens = [f"cluster-owner-{n:02d}-{'x' * 20}" for n in range(12)]
    for token in tokens:
        answer = httpx.post(
            f"{one}/chat/message",
            json={"message": "tagged", "conversation_id": "spread"},
            headers={"X-Client-Token": token},
        )
        assert answer.status_code == 200
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        slots = set()
        for token in tokens:
            owner = f"t-{fingerprint(token)}"
            base = f"gw:{{o:{owner}}}:"
            keys = [f"{base}conv:chat:{owner}/spread:{part}" for part in ("meta", "msgs", "costs")]
            keys.append(f"{base}mine:chat:{owner}")
            assert all(client.exists(key) for key in keys)
            assert len({client.keyslot(key) for key in keys}) == 1
            slots.add(client.keyslot(keys[0]))
        assert len(slots) == len(tokens)
        nodes = {client.get_node_from_key(f"gw:{{o:t-{fingerprint(t)}}}:x").name for t in tokens}
        assert len(nodes) > 1
        shared = [k for k in client.scan_iter(match="gw:{gw}:*") if b":batch:" not in k]
        assert {b"gw:{gw}:lru", b"gw:{gw}:index:chat", b"gw:{gw}:bytes"} <= set(shared)
    finally:
        client.close()


def test_it_refuses_a_declared_script_reaching_into_another_slot(redis_cluster: RedisCluster) -> None:
    """What the cluster contract (tests/test_store_contract.py, StrictClusterStore) relies on: a
    script declared with `#!lua` may touch no key outside its KEYS' slot, even on the same node."""
    client = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        declared = "gw:{o:someone}:x"
        node = client.get_node_from_key(declared)
        other = next(
            f"gw:{{o:{n}}}:x"
            for n in range(10000)
            if client.keyslot(f"gw:{{o:{n}}}:x") != client.keyslot(declared)
            and client.get_node_from_key(f"gw:{{o:{n}}}:x") == node
        )
        reach = f"return redis.call('GET', '{other}')"
        assert client.eval(reach, 1, declared) is None  # an undeclared script may, on its own node
        with pytest.raises(redis.ResponseError, match="do not hash to the same slot"):
            client.eval("#!lua\n" + reach, 1, declared)
    finally:
        client.close()


async def test_it_says_to_set_redis_cluster_when_redis_url_names_a_clusters_node(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_cluster.url, prefix="unset:")  # REDIS_CLUSTER left false
    try:
        with pytest.raises(StoreUnavailable):  # some owner's keys are on another node than the URL's
            for n in range(20):
                await store.append(
                    Kind.CHAT, "c", [{"role": "user", "content": "x"}], owner=f"o{n}", model="m", tokens=0
                )
    finally:
        await store.aclose()
    assert "set REDIS_CLUSTER=true" in caplog.text


async def test_it_counts_a_turn_whose_accounting_broke_off_once_it_is_sent_again(
    redis_cluster: RedisCluster,
) -> None:
    store = RedisClusterStore(redis_cluster.url, prefix="heal:")
    await store.flush()
    turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    try:
        with (
            mock.patch.object(store, "_account", side_effect=StoreUnavailable()),
            pytest.raises(StoreUnavailable),
        ):
            await store.append(
                Kind.CHAT, "c", turn, owner="t-a", model="m", tokens=1, quota_key="ip:me", turn_id="t1"
            )
        assert await store.get(Kind.CHAT, "c", owner="t-a") is not None  # written, not yet counted
        assert int(await store._redis.get(store._shared("records:bytes")) or 0) == 0
        again = await store.append(
            Kind.CHAT, "c", turn, owner="t-a", model="m", tokens=1, quota_key="ip:me", turn_id="t1"
        )
        assert again.replayed and again.message_count == 2
        cost = store.conversation_cost(turn)
        assert await store.stored_bytes() == await store.stored_bytes("ip:me") == cost
        assert await store.count(Kind.CHAT) == 1
    finally:
        await store.flush()
        await store.aclose()


async def test_an_eviction_spares_a_conversation_written_since_the_accounting_counted_it(
    redis_cluster: RedisCluster, settings: Any
) -> None:
    """A turn is written on its owner's slot before the shared accounting counts it (a step later). A
    write of another owner that evicts meanwhile picks the oldest counted conversation: if that is one
    just written again, its new turn stays (its own accounting counts it when it runs)."""
    settings.STORE_MAX_BYTES = 1  # every write evicts every other conversation
    settings.CLIENT_STORAGE_BYTES = 0
    store = RedisClusterStore(redis_cluster.url, prefix="race:")
    await store.flush()
    turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    try:
        await store.append(Kind.CHAT, "a", turn, owner="r-a", model="m", tokens=0)
        with mock.patch.object(store, "_account", new=mock.AsyncMock()):  # its accounting still to come
            await store.append(Kind.CHAT, "a", turn, owner="r-a", model="m", tokens=0)
        await store.append(Kind.CHAT, "b", turn, owner="r-b", model="m", tokens=0)  # evicts "a"
        kept = await store.get(Kind.CHAT, "a", owner="r-a")
        assert kept is not None and kept.message_count == 2  # (its own cap keeps only the last turn)
        # a conversation not written since it was counted goes, as the bound says
        await store.append(Kind.CHAT, "c", turn, owner="r-c", model="m", tokens=0)
        assert await store.get(Kind.CHAT, "b", owner="r-b") is None
    finally:
        await store.flush()
        await store.aclose()


async def test_an_eviction_spares_a_record_written_again_before_its_key_goes(
    redis_cluster: RedisCluster, settings: Any
) -> None:
    """A record's eviction takes it out of the shared counts, then deletes its key on its owner's slot (a
    step later). If the record is written again in between, its new value stays, still counted."""
    settings.STORE_MAX_BYTES = 1  # every record written evicts every other one
    settings.CLIENT_STORAGE_BYTES = 0
    store = RedisClusterStore(redis_cluster.url, prefix="race:")
    await store.flush()
    drop = store._drop_records

    async def written_again_first(kind: Kind, victims: list[Any]) -> None:
        patched.stop()  # once
        await store.put_record(Kind.CHAT, "a", {"metadata": {"v": "2"}}, owner="r-a")  # evicts "b"
        await drop(kind, victims)

    patched = mock.patch.object(store, "_drop_records", new=written_again_first)
    try:
        await store.put_record(Kind.CHAT, "a", {"metadata": {"v": "1"}}, owner="r-a")
        patched.start()
        await store.put_record(Kind.CHAT, "b", {"metadata": {"v": "1"}}, owner="r-b")  # evicts "a"
        assert await store.get_records(Kind.CHAT, ["a"], owner="r-a") == [{"metadata": {"v": "2"}}]
        assert await store.get_records(Kind.CHAT, ["b"], owner="r-b") == [None]
        # the record kept is the one counted: deleting it gives every byte back
        assert await store.delete_record(Kind.CHAT, "a", owner="r-a")
        assert int(await store._redis.get(store._shared("records:bytes")) or 0) == 0
        # a record evicted and not written since goes, key and all
        await store.put_record(Kind.CHAT, "c", {"metadata": {}}, owner="r-c")
        await store.put_record(Kind.CHAT, "d", {"metadata": {}}, owner="r-d")
        assert await store.get_records(Kind.CHAT, ["c"], owner="r-c") == [None]
        assert await store.get_records(Kind.CHAT, ["d"], owner="r-d") == [{"metadata": {}}]
    finally:
        await store.flush()
        await store.aclose()


TURN = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


async def test_its_scripts_go_down_each_nodes_own_connection(redis_cluster: RedisCluster) -> None:
    """Once redis-py has learnt the slot map, every script runs on the node serving its slot, down that
    node's own pipelined connection: redis-py's cluster client carries none."""
    store = RedisClusterStore(redis_cluster.url, prefix="wire:")
    try:
        await store.append(Kind.CHAT, "first", TURN, owner="w-0", model="m", tokens=0)  # learns the map
        with mock.patch.object(store, "_run_pooled", wraps=store._run_pooled) as pooled:
            for n in range(12):  # owners (and so slots) spread over the three nodes
                await store.append(Kind.CHAT, "c", TURN, owner=f"w-{n}", model="m", tokens=0)
                got = await store.get(Kind.CHAT, "c", owner=f"w-{n}")
                assert got is not None and got.message_count == 2
        assert pooled.call_count == 0
        assert len(store._wires) == 3
    finally:
        await store.flush()
        await store.aclose()


async def test_a_stale_slot_map_or_an_unreachable_node_falls_back_to_redis_pys_client(
    redis_cluster: RedisCluster,
) -> None:
    """A slot map that names the wrong node (a slot moved since: Redis answers MOVED, before running
    anything) or a node that cannot be reached: the call goes through redis-py's client, which follows
    the redirect and learns the map; the next call is back on the nodes' own connections."""
    store = RedisClusterStore(redis_cluster.url, prefix="wire:")
    try:
        await store.append(Kind.CHAT, "c", TURN, owner="m-0", model="m", tokens=0)
        manager = store._redis.nodes_manager
        slot = store._redis.keyslot(store._conversation(Kind.CHAT, "m-0", "c") + ":meta")
        right = manager.slots_cache[slot]
        wrong = next(n for n in manager.nodes_cache.values() if n.name != right[0].name)
        manager.slots_cache[slot] = [wrong]
        with mock.patch.object(store, "_run_pooled", wraps=store._run_pooled) as pooled:
            await store.append(Kind.CHAT, "c", TURN, owner="m-0", model="m", tokens=0)
            assert pooled.call_count >= 1
            assert manager.slots_cache[slot][0].name == right[0].name  # redis-py learnt it again
            pooled.reset_mock()
            await store.append(Kind.CHAT, "c", TURN, owner="m-0", model="m", tokens=0)
            assert pooled.call_count == 0
            # the node's own connection cannot be made (here: a port nobody listens on)
            with socket.socket() as unused:
                unused.bind(("127.0.0.1", 0))
                dead = WireClient(redis_cluster.url, timeout=1.0, address=unused.getsockname())
            store._wires[right[0].name] = dead
            await store.append(Kind.CHAT, "c", TURN, owner="m-0", model="m", tokens=0)
            assert pooled.call_count >= 1
        got = await store.get(Kind.CHAT, "c", owner="m-0")
        assert got is not None and got.message_count == 8  # four turns, each stored once
        assert await store.stored_bytes() == store.conversation_cost(got.messages)
    finally:
        await store.flush()
        await store.aclose()


async def test_a_record_is_counted_only_once_it_is_kept(redis_cluster: RedisCluster, settings: Any) -> None:
    """A record's value and score go first, its count in the shared index a step later (second review:
    written at once, the count could land first, an eviction then find no score to match, and the
    value, written after, live on uncounted). Between the steps, another write's eviction finds the
    old count, whose score no longer matches: the new value stays, and its own count follows."""
    settings.CONVERSATION_MAX = 1  # one record of a kind: every record written evicts the other
    store = RedisClusterStore(redis_cluster.url, prefix="order:")
    await store.flush()
    try:
        await store.commit(record=RecordWrite(Kind.RESPONSE, "r1", {"v": 1}, owner="o-one"))
        written, later = store._record_operations(RecordWrite(Kind.RESPONSE, "r1", {"v": 2}, owner="o-one"))
        assert [name for name, _, _ in written] == ["record_set"] and [n for n, _, _ in later] == [
            "index_record"
        ]
        await store._batch(written)  # A: the value and its score
        await store.commit(
            record=RecordWrite(Kind.RESPONSE, "r2", {"v": 1}, owner="o-two")
        )  # B evicts r1's count
        assert await store.get_records(Kind.RESPONSE, ["r1"], owner="o-one") == [{"v": 2}]
        await store._after_commit(
            None, RecordWrite(Kind.RESPONSE, "r1", {}, "o-one"), await store._batch(later)
        )
        indexed = [_text(m) for m in await store._redis.zrange(store._records(Kind.RESPONSE), 0, -1)]
        assert indexed == ["o-one/r1"]
        assert await store.get_records(Kind.RESPONSE, ["r1"], owner="o-one") == [{"v": 2}]
        assert await store.get_records(Kind.RESPONSE, ["r2"], owner="o-two") == [None]
    finally:
        await store.flush()
        await store.aclose()
