"""Phases and lanes (a fake upstream and a service each) that bench/run.py lists, and the runner."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from common import Config
from load import Wrk
from processes import PROCS, Fake, Service, fake_and_service
from report import Row


@dataclass(frozen=True)
class PhaseContext:
    """What a phase gets: wrk, its lane's service and fake upstream, the settings and the run's token."""

    wrk: Wrk
    svc: Service
    fake: Fake
    cfg: Config
    token: str


def always(_cfg: Config) -> bool:
    return True


def no_settings(_cfg: Config) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Phase:
    """One measurement: `run` returns results[key]; `rows` turns that into the table's rows."""

    key: str
    run: Callable[[PhaseContext], dict[str, Any]]
    rows: Callable[[dict[str, Any], Config], list[Row]] | None = None
    enabled: Callable[[Config], bool] = always

    def wanted(self, cfg: Config) -> bool:
        return (not cfg.only or self.key in cfg.only) and self.enabled(cfg)


@dataclass(frozen=True)
class Lane:
    """One fake upstream and one service (`service` names their logs); its phases run on it in order."""

    service: str
    phases: tuple[Phase, ...]
    settings: Callable[[Config], dict[str, str]] = no_settings  # the service's extra environment

    def enabled(self, cfg: Config) -> bool:
        return any(phase.wanted(cfg) for phase in self.phases)


def run_lane(lane: Lane, ctx: PhaseContext) -> dict[str, Any]:
    return {phase.key: phase.run(ctx) for phase in lane.phases if phase.wanted(ctx.cfg)}


def run_stage(lanes: Sequence[Lane], wrk: Wrk, cfg: Config, token: str) -> dict[str, Any]:
    """Start each lane's fake upstream and service in turn, then run the lanes side by side.

    A lone lane runs in this (the main) thread; several run one thread each, and their results are
    kept in the order the lanes are listed.
    """
    lanes = [lane for lane in lanes if lane.enabled(cfg)]
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        contexts = []
        for lane in lanes:
            fake, svc = stack.enter_context(fake_and_service(lane.service, **lane.settings(cfg)))
            contexts.append(PhaseContext(wrk, svc, fake, cfg, token))
        if len(lanes) <= 1:
            return run_lane(lanes[0], contexts[0]) if lanes else results
        pool = ThreadPoolExecutor(len(lanes))
        try:
            futures = [pool.submit(run_lane, lane, ctx) for lane, ctx in zip(lanes, contexts, strict=True)]
            for future in futures:
                results.update(future.result())
        except BaseException:
            PROCS.stop_all()  # ends the other lanes' wrk at once, so their threads end too
            raise
        finally:
            pool.shutdown(wait=True)
    return results


def table_rows(phases: Sequence[Phase], results: dict[str, Any], cfg: Config) -> list[Row]:
    """The table's rows, phase by phase in the order given; a phase that did not run adds none."""
    rows: list[Row] = []
    for phase in phases:
        if phase.rows is not None and phase.key in results:
            rows += phase.rows(results[phase.key], cfg)
    return rows
