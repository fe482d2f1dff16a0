"""`make bench`: the service's added latency, throughput, streaming and memory, all on loopback.

Starts a fast fake upstream (bench/fake_upstream.py), the service (one uvicorn worker, the local
store) and drives it with wrk (bench/post.lua; installed with apt-get when missing) plus a small
httpx client for streams. Prints a table with the targets and writes bench/results/latest.json
(with the services' logs, and py-spy's raw profile when asked for, beside it).

Added latency is timed per request by the Lua script (concurrency 1): wrk's own percentiles are
corrected for coordinated omission, which invents samples in a closed-loop run's tail (they are kept
in the JSON and shown beside). Throughput is wrk's requests / duration. The memory fill (10,000
conversations, CONVERSATION_MAX=20000) and the soak (default CONVERSATION_MAX) run at the same time on
two separate single-worker services, one a core; each figure is that process's own VmRSS.

Settings (environment): BENCH_SECONDS (10, each measured wrk run), BENCH_WARMUP (2, seconds of wrk
before each), BENCH_CONCURRENCY (16), BENCH_STREAM_SAMPLES (200 TTFB pairs), BENCH_STREAM_RUNS (5
streams with delay), BENCH_CHUNK_DELAY_MS (50), BENCH_FILL_CONVERSATIONS (10000), BENCH_SOAK_TURNS
(100000), BENCH_SOAK_SAMPLE_EVERY (20000), BENCH_SOAK_PATH (/memory-chat/message), BENCH_PROFILE (0;
1 = also profile POST /chat/message under load with py-spy, on the local store and on Redis),
BENCH_PROFILE_SECONDS (10), BENCH_OPEN_STREAMS (1000 simultaneous streams), BENCH_OPEN_STREAM_CHUNKS
(40), BENCH_PIN (0; 1 = in the open streams' warm rounds each server runs alone on CPU 1, the client
and the fake upstream on CPU 0), BENCH_BASELINE (empty; a git revision: phase B runs it beside this
checkout, taking turns) and BENCH_ONLY (empty: every phase; else a comma list of phase keys, e.g.
`latency,baseline`, `store` or `open_streams`).

The code sits beside this file: common (paths, settings), processes (fake upstream, service, clean-up),
load (wrk, the stream client), phases/ (one module a phase) and report (targets, rows, table, JSON).
To add a phase: write phases/<name>.py with run(ctx) -> dict, give it a Phase below, put it in a lane
of STAGES (a new lane gets its own fake upstream and service) and in TABLE if it has rows.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# The bench folder, so its modules import by their plain names however this file is started.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from common import RESULTS, ROOT, BenchError, Config
from load import Wrk, ensure_wrk
from phases import (
    Lane,
    Phase,
    baseline,
    edge,
    hostile,
    latency,
    memory,
    open_streams,
    profile,
    responses,
    run_stage,
    soak,
    store,
    streaming,
    table_rows,
    throughput,
)
from processes import PROCS, on_signal

LATENCY = Phase("latency", latency.run, report.latency_rows)
BASELINE = Phase("baseline", baseline.run, report.baseline_rows, enabled=baseline.enabled)
THROUGHPUT = Phase("throughput", throughput.run, report.throughput_rows)
STREAMING = Phase("streaming", streaming.run, report.streaming_rows)
PROFILE = Phase("profile", profile.run, report.profile_rows, enabled=profile.enabled)
MEMORY = Phase("memory", memory.run, report.memory_rows)
SOAK = Phase("soak", soak.run, report.soak_rows)
EDGE = Phase("edge", edge.run, report.edge_rows)
HOSTILE = Phase("hostile", hostile.run, report.hostile_rows)
RESPONSES = Phase("responses", responses.run, report.responses_rows)
STORE = Phase("store", store.run, report.store_rows)
OPEN_STREAMS = Phase("open_streams", open_streams.run, report.open_streams_rows)

# What runs, stage after stage. A stage's lanes each start a fake upstream and a service, then run
# side by side (one thread a lane when there are several); a lane's phases run in order on its service.
STAGES: tuple[tuple[Lane, ...], ...] = (
    (Lane("main", (LATENCY, BASELINE, THROUGHPUT, STREAMING, HOSTILE, PROFILE)),),
    # Two single-worker services on two cores: the fill and the soak run side by side (each figure is
    # one process's own RSS, so neither disturbs the other's).
    (Lane("memory", (MEMORY,), settings=memory.service_settings), Lane("soak", (SOAK,))),
    (Lane("edge-thread", (EDGE,), settings=edge.service_settings),),
    # Its own service, keeping every response the run writes (see phases/responses.py).
    (Lane("responses", (RESPONSES,), settings=responses.service_settings),),
    # The local store's service; the phase starts Redis, a delay proxy and the Redis services itself.
    (Lane("store-local", (STORE,)),),
    # A thousand open streams on fresh services, beside a bare Django floor (see phases/open_streams.py).
    (Lane("open-streams", (OPEN_STREAMS,), settings=open_streams.service_settings),),
)

# The table's rows, phase by phase in this order (the profile's row has always come last).
TABLE: tuple[Phase, ...] = (
    LATENCY,
    BASELINE,
    THROUGHPUT,
    STREAMING,
    HOSTILE,
    MEMORY,
    SOAK,
    EDGE,
    RESPONSES,
    STORE,
    OPEN_STREAMS,
    PROFILE,
)


def main() -> int:
    signal.signal(signal.SIGTERM, on_signal)
    cfg = Config()
    started = time.perf_counter()
    RESULTS.mkdir(parents=True, exist_ok=True)
    wrk_binary = ensure_wrk()
    token = uuid.uuid4().hex[:8]
    load_at_start = list(os.getloadavg())
    code = report.git_state()
    if load_at_start[0] > 1.0:
        print(
            f"note: load average {load_at_start[0]:.1f} before the start; figures will be noisy", flush=True
        )
    results: dict[str, Any] = {}
    print(
        f"bench: {cfg.seconds} s per wrk run after {cfg.warmup} s warm-up; "
        f"logs in {RESULTS.relative_to(ROOT)}/",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            wrk = Wrk(wrk_binary, Path(workdir))
            for lanes in STAGES:
                results |= run_stage(lanes, wrk, cfg, token)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted", file=sys.stderr)
        return 130
    finally:
        PROCS.stop_all()
    elapsed = time.perf_counter() - started
    rows = table_rows(TABLE, results, cfg)
    table = report.render(rows)
    print()
    print(table)
    if "profile" in results:
        print()
        print(report.render_profile(results["profile"]))
    if "profile" in results.get("store", {}):
        print()
        print(report.render_profile(results["store"]["profile"], "POST /chat/message on Redis (loopback)"))
    misses = [r.measure for r in rows if r.ok is False]
    print(f"\n{sum(r.ok is True for r in rows)} PASS, {len(misses)} MISS; total run time {elapsed:.0f} s")
    written = report.write_report(
        elapsed=elapsed,
        load_at_start=load_at_start,
        code=code,
        wrk_binary=wrk_binary,
        cfg=cfg,
        rows=rows,
        results=results,
        table=table,
    )
    print(f"written {written.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
