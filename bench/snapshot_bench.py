"""What snapshots of the local store cost: `python bench/snapshot_bench.py` (from the repository root).

1. In process: a store of 10,000 conversations of 10 messages (the memory fill of `make bench`); the time
   the event loop spends taking its contents, the time to save it (serialise, write, fsync, rename) and
   the peak extra memory while saving (tracemalloc), the file's size, and the time to load it back.
2. Live: the service under uvicorn (one worker) with STORE_SNAPSHOT_PATH and STORE_SNAPSHOT_INTERVAL=1,
   filled with 10,000 conversations through POST /memory-chat/message, then `GET /health` timed one at a
   time for a while as a trickle of turns keeps the store changing (so it saves every second), its
   resident memory sampled meanwhile, then POST /memory-chat/message throughput at concurrency 16. The
   same again on a service that loaded that snapshot and saves only hourly (no save while measured).
   Requests that overlapped a save (its temporary file existed) are also shown on their own.

Settings (environment): SNAPSHOT_BENCH_CONVERSATIONS (10000), SNAPSHOT_BENCH_SECONDS (20, each live
measurement), SNAPSHOT_BENCH_CONCURRENCY (16, for the fill and the throughput), SNAPSHOT_BENCH_LIVE
(1; 0 = the in-process part only).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONVERSATIONS = int(os.environ.get("SNAPSHOT_BENCH_CONVERSATIONS", "10000"))
SECONDS = float(os.environ.get("SNAPSHOT_BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("SNAPSHOT_BENCH_CONCURRENCY", "16"))
LIVE = os.environ.get("SNAPSHOT_BENCH_LIVE", "1") != "0"
TURNS = 5  # 10 messages a conversation
FILL_MESSAGE = "Hello there! How are you doing today?"  # as bench/run.py's memory fill


def in_process(folder: Path) -> dict[str, float]:
    """The store filled in this process; the save's steps timed, its memory traced, the file loaded."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONVERSATION_MAX=str(CONVERSATIONS),
        # Room for every conversation: the byte bound would otherwise evict the oldest while filling.
        STORE_MAX_BYTES="1GiB",
        LOG_LEVEL="WARNING",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from gateway.turns import turn
    from stores import Kind, reset_store, snapshot
    from stores.local import LocalStore

    async def run() -> dict[str, float]:
        store = LocalStore()
        for n in range(CONVERSATIONS):
            for _ in range(TURNS):
                reply = f"Echo from memory chat: {FILL_MESSAGE}"
                await store.append(
                    Kind.MEMORY,
                    f"c{n}",
                    turn(FILL_MESSAGE, reply, model="m"),
                    owner=f"o{n}",
                    model="m",
                    tokens=0,
                )
        path = folder / "inprocess.snapshot"
        on_loop, saves = [], []
        for _ in range(20):
            started = time.perf_counter()
            store.contents()
            on_loop.append(time.perf_counter() - started)
        for _ in range(3):
            started = time.perf_counter()
            size = await asyncio.to_thread(snapshot.write_snapshot, store, store.contents(), path)
            saves.append(time.perf_counter() - started)
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        snapshot.write_snapshot(store, store.contents(), path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        reset_store()
        fresh = LocalStore()
        started = time.perf_counter()
        restored = snapshot.load_snapshot(fresh, path, time.time())
        load = time.perf_counter() - started
        assert restored is not None and restored.conversations == CONVERSATIONS, restored
        return {
            "contents_ms": statistics.median(on_loop) * 1000,
            "contents_max_ms": max(on_loop) * 1000,
            "save_ms": statistics.median(saves) * 1000,
            "peak_extra_mib": (peak - base) / 2**20,
            "size_mib": size / 2**20,
            "load_ms": load * 1000,
        }

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    def __init__(self, path: Path, interval: float, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "STORE_SNAPSHOT_PATH": str(path),
            "STORE_SNAPSHOT_INTERVAL": str(interval),
            "CONVERSATION_MAX": str(CONVERSATIONS),
            # One client fills every conversation: neither byte bound may evict any.
            "STORE_MAX_BYTES": "1GiB",
            "CLIENT_STORAGE_BYTES": "0",
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT": "0",
            "REDIS_URL": "",
            "BACKEND_API_KEYS": "",
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(self.port)]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "--no-access-log"], cwd=ROOT, env=env, stdout=out, stderr=out
            )
        started = time.monotonic()
        while time.monotonic() - started < 120:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    self.startup_s = time.monotonic() - started
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the service did not start; see {log}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)


async def fill(url: str) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(CONVERSATIONS):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            for _ in range(TURNS):
                body = {"message": FILL_MESSAGE, "conversation_id": f"fill-{n}"}
                (await client.post(f"{url}/memory-chat/message", json=body)).raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


def measure(service: Service, path: Path) -> dict[str, Any]:
    """/health latencies one at a time while a trickle of turns keeps the store changing."""
    stop = threading.Event()
    saves: list[tuple[float, float]] = []

    def watch_saves() -> None:  # when a save's temporary file exists, a save is under way
        began: float | None = None
        prefix = f".{path.name}."
        while not stop.is_set():
            saving = any(n.startswith(prefix) and n.endswith(".tmp") for n in os.listdir(path.parent))
            now = time.perf_counter()
            if saving and began is None:
                began = now
            elif not saving and began is not None:
                saves.append((began, now))
                began = None
            time.sleep(0.0005)

    def trickle() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            n = 0
            while not stop.wait(0.25):
                body = {"message": "trickle", "conversation_id": f"fill-{n % CONVERSATIONS}"}
                client.post("/memory-chat/message", json=body)
                n += 1

    rss = [rss_mib(service.process.pid)]

    def watch_memory() -> None:
        while not stop.wait(0.05):
            rss.append(rss_mib(service.process.pid))

    helpers = [threading.Thread(target=f) for f in (watch_saves, trickle, watch_memory)]
    for helper in helpers:
        helper.start()
    samples: list[tuple[float, float]] = []
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for _ in range(200):
            client.get("/health")
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            client.get("/health").raise_for_status()
            samples.append((started, time.perf_counter()))
    stop.set()
    for helper in helpers:
        helper.join()
    latencies = [(end - begin) * 1000 for begin, end in samples]
    during = [
        (end - begin) * 1000
        for begin, end in samples
        if any(begin < save_end and end > save_begin for save_begin, save_end in saves)
    ]
    return {
        "requests": len(latencies),
        "all": summary(latencies),
        "during_saves": summary(during) if during else None,
        "saves": len(saves),
        "save_ms": statistics.median([(e - b) * 1000 for b, e in saves]) if saves else None,
        "rss_start_mib": rss[0],
        "rss_peak_mib": max(rss),
        "rss_end_mib": rss[-1],
        "throughput": asyncio.run(throughput(service.url)),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def throughput(url: str) -> dict[str, Any]:
    """POST /memory-chat/message at concurrency CONCURRENCY for SECONDS: every turn changes the store."""
    latencies: list[float] = []
    deadline = time.perf_counter() + SECONDS

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        n = w
        while time.perf_counter() < deadline:
            body = {"message": FILL_MESSAGE, "conversation_id": f"fill-{n % CONVERSATIONS}"}
            started = time.perf_counter()
            (await client.post(f"{url}/memory-chat/message", json=body)).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            n += CONCURRENCY

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client, w) for w in range(CONCURRENCY)))
    return {"rps": len(latencies) / SECONDS, **summary(latencies)}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


def show(name: str, result: dict[str, Any]) -> None:
    def fmt(s: dict[str, float] | None) -> str:
        return (
            "-"
            if s is None
            else f"p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, max {s['max']:.1f} ms (n={s['n']})"
        )

    print(f"  {name}: GET /health, {result['requests']} requests; all: {fmt(result['all'])}")
    if result["saves"]:
        saves = f"{result['saves']} saves (median {result['save_ms']:.0f} ms)"
        print(f"    {saves}; during saves: {fmt(result['during_saves'])}")
    start, peak, end = result["rss_start_mib"], result["rss_peak_mib"], result["rss_end_mib"]
    print(f"    service VmRSS: {start:.1f} MiB at start, peak {peak:.1f}, end {end:.1f}")
    t = result["throughput"]
    print(
        f"    POST /memory-chat/message, concurrency {CONCURRENCY}: {t['rps']:.0f} req/s,"
        f" p50 {t['p50']:.1f} ms, p99 {t['p99']:.1f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="snapshot-bench-") as tmp:
        folder = Path(tmp)
        print(f"1. In process: {CONVERSATIONS} conversations of {TURNS * 2} messages", flush=True)
        figures = in_process(folder)
        on_loop = f"median {figures['contents_ms']:.1f} ms, max {figures['contents_max_ms']:.1f} ms of 20"
        print(f"  contents taken on the loop: {on_loop}")
        print(
            f"  save (thread: read, serialise, write, fsync, rename): median {figures['save_ms']:.0f} ms of 3"
        )
        print(f"  peak extra memory while saving (tracemalloc): {figures['peak_extra_mib']:.2f} MiB")
        print(f"  snapshot size: {figures['size_mib']:.1f} MiB")
        print(f"  load (read, check, restore): {figures['load_ms']:.0f} ms")

        if not LIVE:
            return
        path = folder / "live.snapshot"
        print(f"2. Live: filling {CONVERSATIONS} conversations through /memory-chat/message ...", flush=True)
        saving = Service(path, 1.0, folder / "saving.log")
        try:
            print(f"  filled in {asyncio.run(fill(saving.url)):.0f} s")
            print(f"  measuring GET /health for {SECONDS:.0f} s with a save every second ...", flush=True)
            with_saves = measure(saving, path)
        finally:
            saving.stop()
        quiet = Service(path, 3600.0, folder / "quiet.log")
        print(f"  a service loading that snapshot started in {quiet.startup_s:.1f} s", flush=True)
        try:
            print(f"  measuring GET /health for {SECONDS:.0f} s with no save ...", flush=True)
            without = measure(quiet, path)
        finally:
            quiet.stop()
        show("saving every second", with_saves)
        show("not saving", without)


if __name__ == "__main__":
    main()
