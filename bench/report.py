"""The report: targets, each phase's table rows, the table and profile text, and bench/results/latest.json."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, Config

TARGET_P50_MS = 1.5
TARGET_P99_MS = 4.0
TARGET_RPS = 600.0
TARGET_TTFB_MS = 2.0
TARGET_CONVERSATION_BYTES = 8 * 1024


@dataclass
class Row:
    measure: str
    figure: str
    target: str = ""
    ok: bool | None = None  # None: information, no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def _errors_note(run: dict[str, Any]) -> str:
    count = sum(run["errors"].values())
    return f"  ({count} errors: {run['errors']})" if count else ""


# ---------------------------------------------------------------------------------------------------
# rows, one function per phase: (results[phase key], settings) -> rows


def latency_rows(lat: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    for q, target in (("50", TARGET_P50_MS), ("99", TARGET_P99_MS)):
        added = lat[f"added_p{q}_ms"]
        rows.append(
            Row(
                f"1. added latency p{q}, c=1, POST /chat/message (new conversation)",
                f"{added:.2f} ms  (service {lat['service'][f'raw_p{q}_ms']:.2f}"
                f" - direct {lat['direct'][f'raw_p{q}_ms']:.2f}; wrk's corrected figures"
                f" {lat['service'][f'p{q}_ms']:.2f} - {lat['direct'][f'p{q}_ms']:.2f})"
                + _errors_note(lat["service"]),
                f"<= {target:g} ms",
                added <= target and not lat["service"]["errors"],
            )
        )
    rows.append(
        Row(
            "1. service CPU time per request, c=1, POST /chat/message",
            f"{lat['service_cpu_us_per_request']:.0f} µs  (the uvicorn process's own, from /proc)",
            "",
            None,
        )
    )
    return rows


def baseline_rows(base: dict[str, Any], cfg: Config) -> list[Row]:
    this, other = base["this"], base["baseline"]
    store = " on Redis" if base.get("store") == "redis" else ""
    label = f"B. beside {base['revision']}, c=1, POST /chat/message{store}, {base['rounds']} turns each"
    return [
        Row(
            f"{label}: added latency p50",
            f"{this['added_p50_ms']:.2f} ms  (baseline {other['added_p50_ms']:.2f} ms; medians)",
        ),
        Row(
            f"{label}: service CPU per request",
            f"{this['cpu_us_per_request']:.0f} µs  (baseline {other['cpu_us_per_request']:.0f} µs)",
        ),
    ]


def throughput_rows(tp: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    c = cfg.concurrency
    for key, label, target in (
        ("chat_new", f"2. POST /chat/message, c={c}, new conversations", TARGET_RPS),
        ("chat_long", f"2. POST /chat/message, c={c}, one long conversation", None),
        ("v1_one_message", f"3. POST /v1/chat/completions, c={c}, 1 message", TARGET_RPS),
        ("v1_ten_messages", f"3. POST /v1/chat/completions, c={c}, 10 messages", None),
    ):
        run = tp[key]
        figure = (
            f"{run['rps']:.0f} req/s  (p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms)"
            + _errors_note(run)
        )
        if target is None:
            rows.append(Row(label, figure))
        else:
            rows.append(
                Row(label, figure, f">= {target:g} req/s", run["rps"] >= target and not run["errors"])
            )
    return rows


TARGET_FLOOD_ANSWER_S = 1.0
TARGET_FLOOD_OTHERS_MS = 100.0
TARGET_SCHEMA_MS = 5.0


def hostile_rows(h: dict[str, Any], cfg: Config) -> list[Row]:
    health = h["health_during_flood_ms"]
    schema = h["schema_ms"]
    return [
        Row(
            f"6. a {h['flood_bytes'] // 2**20} MB request header: answered",
            f"{h['flood_seconds'] * 1000:.1f} ms  ({h['flood_answer'] or 'connection closed'})",
            f"< {TARGET_FLOOD_ANSWER_S:g} s",
            h["flood_seconds"] < TARGET_FLOOD_ANSWER_S and " 200 " not in h["flood_answer"],
        ),
        Row(
            "6. GET /health meanwhile: slowest",
            f"{health['max']:.1f} ms  (median {health['median']:.1f}, {health['count']} requests)",
            f"< {TARGET_FLOOD_OTHERS_MS:g} ms",
            health["max"] < TARGET_FLOOD_OTHERS_MS,
        ),
        Row(
            "6. GET /openapi.json, 50 in a row after the first",
            f"median {schema['median']:.2f} ms  (p90 {schema['p90']:.2f}, max {schema['max']:.2f})",
            f"< {TARGET_SCHEMA_MS:g} ms (median)",
            schema["median"] < TARGET_SCHEMA_MS,
        ),
    ]


def responses_rows(res: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    labels = {
        "responses": "POST /v1/responses (3-turn chain)",
        "completions": "POST /v1/chat/completions (same 7 messages)",
    }
    direct = res["direct_c1"]
    for name, label in labels.items():
        c1 = res[f"{name}_c1"]
        rows.append(
            Row(
                f"9. added latency p50 / p99, c=1, {label}",
                f"{res[f'{name}_added_p50_ms']:.2f} / {res[f'{name}_added_p99_ms']:.2f} ms  (service"
                f" {c1['raw_p50_ms']:.2f} / {c1['raw_p99_ms']:.2f} - direct {direct['raw_p50_ms']:.2f}"
                f" / {direct['raw_p99_ms']:.2f})" + _errors_note(c1),
            )
        )
    for name, label in labels.items():
        run = res[f"{name}_load"]
        rows.append(
            Row(
                f"9. {label}, c={cfg.concurrency}",
                f"{run['rps']:.0f} req/s  (p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms)"
                + _errors_note(run),
            )
        )
    return rows


TARGET_REDIS_ADDED_P50_MS = 0.4
TARGET_REDIS_RPS_SHARE = 0.85


def store_rows(st: dict[str, Any], cfg: Config) -> list[Row]:
    local = st["local"]
    rows = [
        Row(
            f"10. POST /chat/message (new conversation), local store: p50 c=1 / req/s c={cfg.concurrency}",
            f"{local['p50_ms']:.2f} ms / {local['rps']:.0f} req/s" + _errors_note(local["cn"]),
        )
    ]
    labels = {
        "redis": (
            f"Redis on loopback (PING {st['redis_rtt_ms']:.2f} ms, "
            f"{st.get('redis_idle_rtt_ms', 0):.2f} ms after idle)"
        ),
        "redis_far": f"Redis 1 ms away (delay proxy, PING {st.get('far_rtt_ms', 0):.2f} ms)",
        "redis_two_workers": "Redis on loopback, WORKERS=2",
        "redis_cluster": "Redis Cluster on loopback (3 masters)",
    }
    for name, label in labels.items():
        run = st.get(name)
        if run is None:
            continue
        added = run["p50_ms"] - local["p50_ms"]
        share = run["rps"] / local["rps"] if local["rps"] else 0.0
        target = name == "redis"
        rows.append(
            Row(
                f"10. {label}: p50 added over local, c=1",
                f"{added:+.2f} ms  ({run['p50_ms']:.2f} - {local['p50_ms']:.2f})" + _errors_note(run["c1"]),
                f"<= {TARGET_REDIS_ADDED_P50_MS:g} ms" if target else "",
                (added <= TARGET_REDIS_ADDED_P50_MS and not run["c1"]["errors"]) if target else None,
            )
        )
        rows.append(
            Row(
                f"10. {label}: req/s c={cfg.concurrency}, share of local",
                f"{run['rps']:.0f} req/s = {share:.2f}" + _errors_note(run["cn"]),
                f">= {TARGET_REDIS_RPS_SHARE:g}" if target else "",
                (share >= TARGET_REDIS_RPS_SHARE and not run["cn"]["errors"]) if target else None,
            )
        )
    if st["local"].get("cpu_us_c1") and st.get("redis", {}).get("cpu_us_c1"):
        rows.append(
            Row(
                "10. CPU per turn at c=1: the worker, local / Redis on loopback; the redis-server",
                f"{st['local']['cpu_us_c1']:,.0f} / {st['redis']['cpu_us_c1']:,.0f} µs; "
                f"{st.get('redis_server_cpu_us_c1', 0):,.0f} µs",
            )
        )
    one, two = st.get("redis"), st.get("redis_two_workers")
    if one and two and one["rps"]:
        rows.append(
            Row(
                f"10. Redis on loopback: WORKERS=2 over one worker, req/s c={cfg.concurrency}",
                f"{two['rps'] / one['rps']:.2f}x  ({two['rps']:.0f} / {one['rps']:.0f} req/s)",
            )
        )
    if "profile" in st:
        rows.append(
            Row(
                "10. Redis: throughput while py-spy sampled",
                f"{st['profile'].get('rps_while_profiled', 0):.0f} req/s",
            )
        )
    return rows


def edge_rows(edge: dict[str, Any], cfg: Config) -> list[Row]:
    rows = []
    for key, label in (("c1", "8. ASGI_EDGE=thread, /chat/message, c=1"), (f"c{cfg.concurrency}", None)):
        run = edge[key]
        label = label or f"8. ASGI_EDGE=thread, /chat/message, c={cfg.concurrency}"
        figure = f"{run['rps']:.0f} req/s  (p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms)"
        rows.append(Row(label, figure + _errors_note(run)))
    return rows


def streaming_rows(st: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    rows.append(
        Row(
            "4. streaming: added time to first frame (median)",
            f"{st['ttfb_added_ms']:.2f} ms  (service {st['ttfb_service_ms']['median']:.2f} - direct "
            f"{st['ttfb_direct_ms']['median']:.2f})",
            f"<= {TARGET_TTFB_MS:g} ms",
            st["ttfb_added_ms"] <= TARGET_TTFB_MS,
        )
    )
    gap = st["gap_service_ms"]
    delay = st["chunk_delay_ms"]
    spaced = abs(gap["median"] - delay) <= max(5.0, delay * 0.2) and gap["p10"] >= delay / 2
    rows.append(
        Row(
            f"4. streaming: gap between frames, upstream every {delay} ms",
            f"median {gap['median']:.1f} ms  (p10 {gap['p10']:.1f}, p90 {gap['p90']:.1f}, "
            f"{gap['count']} gaps; "
            f"direct median {st['gap_direct_ms']['median']:.1f})",
            f"~{delay} ms, none bunched",
            spaced,
        )
    )
    return rows


TARGET_STREAM_CPU_RATIO = 1.3
TARGET_STREAM_MEMORY_RATIO = 1.25


def _stream_figures(run: dict[str, Any]) -> str:
    errors = f", {sum(run['errors'].values())} failed: {run['errors']}" if run["errors"] else ""
    return (
        f"{run['cpu_us_per_chunk']:.0f} us/chunk, {run['kib_per_stream']:.1f} KiB/stream; "
        f"TTFB p50 {run['ttfb_ms'].get('p50', 0):.0f} ms p99 {run['ttfb_ms'].get('p99', 0):.0f}; "
        f"gap p50 {run['gap_ms'].get('p50', 0):.1f} ms p99 {run['gap_ms'].get('p99', 0):.1f}; "
        f"{run['complete']}/{run['streams']} complete in {run['wall_seconds']:.1f} s, "
        f"client CPU {run['client_cpu_seconds']:.1f} s{errors}"
    )


def open_streams_rows(os_: dict[str, Any], cfg: Config) -> list[Row]:
    n, chunks, delay, floor = os_["streams"], os_["chunks"], os_["delay_ms"], os_["floor"]
    relay = os_["relay"]
    pinned = " (each server alone on CPU 1: BENCH_PIN)" if os_.get("pinned") else ""
    rows = [
        Row(
            f"6. {n} open streams x {chunks} chunks / {delay} ms{pinned}: client reading the fake directly",
            _stream_figures(os_["direct"]),
        ),
        Row("6. ... bare Django StreamingHttpResponse (the floor)", _stream_figures(os_["floor"])),
        Row(
            "6. ... the same relaying the upstream with aiohttp, unparsed (relay floor)",
            _stream_figures(relay),
        ),
    ]
    for key, label in (("chat", "POST /chat/message"), ("v1", "POST /v1/chat/completions")):
        run = os_[key]
        stored = run.get("stored")
        stored_ok = stored is None or (stored["missing"] == 0 and stored["wrong"] == 0)
        whole = run["complete"] == run["streams"] and stored_ok
        note = (
            f"; stored {stored['checked'] - stored['missing'] - stored['wrong']}/{stored['checked']} whole"
            if stored
            else ""
        )
        rows.append(Row(f"6. ... {label} stream=true", _stream_figures(run) + note))
        rows.append(
            Row(
                f"6. ... {label}: CPU per chunk / floor's",
                f"{run['cpu_ratio']:.2f}x  ({run['cpu_us_per_chunk']:.0f} / "
                f"{floor['cpu_us_per_chunk']:.0f} us)",
                f"<= {TARGET_STREAM_CPU_RATIO:g}x, all complete",
                run["cpu_ratio"] <= TARGET_STREAM_CPU_RATIO and whole,
            )
        )
        rows.append(
            Row(
                f"6. ... {label}: CPU per chunk / relay floor's",
                f"{run['cpu_ratio_relay']:.2f}x  ({run['cpu_us_per_chunk']:.0f} / "
                f"{relay['cpu_us_per_chunk']:.0f} us)",
            )
        )
        rows.append(
            Row(
                f"6. ... {label}: memory per open stream / floor's",
                f"{run['memory_ratio']:.2f}x  ({run['kib_per_stream']:.1f} / "
                f"{floor['kib_per_stream']:.1f} KiB)",
                f"<= {TARGET_STREAM_MEMORY_RATIO:g}x",
                run["memory_ratio"] <= TARGET_STREAM_MEMORY_RATIO and whole,
            )
        )
    return rows


def memory_rows(mem: dict[str, Any], cfg: Config) -> list[Row]:
    per = mem["bytes_per_conversation"]
    return [
        Row(
            f"5. memory per stored 10-message conversation ({mem['stored']} stored)",
            f"{per / 1024:.2f} KiB  (RSS {mem['rss_before'] / 2**20:.1f}"
            f" -> {mem['rss_after'] / 2**20:.1f} MiB)",
            f"<= {TARGET_CONVERSATION_BYTES // 1024} KiB",
            per <= TARGET_CONVERSATION_BYTES and mem["stored"] == mem["conversations"] and not mem["failed"],
        )
    ]


def soak_rows(soak: dict[str, Any], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    for sample in soak["samples"]:
        rows.append(
            Row(
                f"5. soak RSS after {sample['turns']:>6} turns",
                f"{sample['rss'] / 2**20:.1f} MiB  ({sample['conversations']} conversations kept)",
            )
        )
    samples = soak["samples"]
    if len(samples) >= 3:
        last = samples[-1]["rss"] - samples[len(samples) // 2]["rss"]
        rows.append(
            Row(
                "5. soak RSS growth over its second half",
                f"{last / 2**20:+.1f} MiB  (evictions {soak['evictions']}, failed {soak['failed']})",
            )
        )
    return rows


def profile_rows(profile: dict[str, Any], cfg: Config) -> list[Row]:
    return [Row("profile: throughput while sampled", f"{profile.get('rps_while_profiled', 0):.0f} req/s")]


# ---------------------------------------------------------------------------------------------------
# text


def render(rows: list[Row]) -> str:
    widths = [
        max(len(h), max((len(getattr(r, a)) for r in rows), default=0))
        for h, a in (
            ("measure", "measure"),
            ("figure", "figure"),
            ("target", "target"),
            ("result", "verdict"),
        )
    ]
    line = "  ".join("-" * w for w in widths)
    out = [
        "  ".join(h.ljust(w) for h, w in zip(("measure", "figure", "target", "result"), widths, strict=True)),
        line,
    ]
    for r in rows:
        cells = (r.measure, r.figure, r.target, r.verdict)
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def render_profile(profile: dict[str, Any], title: str = "POST /chat/message") -> str:
    out = [
        f"profile of {title} under load: {profile['samples']} samples"
        " (py-spy --gil: the thread holding the GIL)",
        "top self time:",
    ]
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["self"]]
    out.append("self time by package or module:")
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["self_by_package"]]
    out.append("top inclusive time (below the event loop):")
    out += [f"  {p['percent']:5.1f}%  {p['function']}" for p in profile["inclusive"]]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# latest.json


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files changed on top of it."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        state = {"commit": head.stdout.strip(), "changed": [x[3:] for x in status.stdout.splitlines()]}
    return state


def version(args: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    return "unknown"


def write_report(
    *,
    elapsed: float,
    load_at_start: list[float],
    code: dict[str, Any],
    wrk_binary: str,
    cfg: Config,
    rows: list[Row],
    results: dict[str, Any],
    table: str,
) -> Path:
    """Write bench/results/latest.json; its path."""
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_seconds": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": version([wrk_binary, "-v"]),
        },
        "code": code,
        "config": asdict(cfg) | {"only": sorted(cfg.only)},
        "targets": {
            "added_p50_ms": TARGET_P50_MS,
            "added_p99_ms": TARGET_P99_MS,
            "rps_new_conversations": TARGET_RPS,
            "ttfb_added_ms": TARGET_TTFB_MS,
            "bytes_per_conversation": TARGET_CONVERSATION_BYTES,
        },
        "checks": [asdict(r) | {"result": r.verdict} for r in rows],
        "results": results,
        "table": table,
    }
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
