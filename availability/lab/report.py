"""Run several policies and print their figures: a rich table or JSON for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console
from rich.table import Table

from availability.lab.closed_form import predict
from availability.lab.policies import Policy
from availability.lab.simulation import Result, policy_workload, simulate
from availability.lab.workload import Workload

__all__ = ["compare", "render_json", "render_table"]


def compare(
    workload: Workload, policies: Sequence[Policy], *, workers: int | None = None
) -> list[Result]:
    """Every policy simulated on the same workload (same seed), in parallel processes.

    One process per policy (up to a few per core), not one per core: five runs on
    two cores then share them and all end after 2.5 runs' time, not after three
    rounds."""
    workers = workers or min(len(policies), 4 * (os.cpu_count() or 1))
    if workers <= 1:
        return [simulate(workload, policy) for policy in policies]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(simulate, [workload] * len(policies), policies))


def _row(workload: Workload, policy: Policy, result: Result) -> dict[str, Any]:
    row = result.as_json()
    if policy.fixed is not None:
        predicted = predict(policy_workload(workload, policy), policy.fixed)
        row["predicted"] = {
            "hit_ratio": predicted.hit_ratio,
            "slot_calls_per_day": predicted.slot_calls_per_day,
            "stale_ratio": predicted.stale_ratio,
        }
    return row


def render_json(workload: Workload, policies: Sequence[Policy], results: Sequence[Result]) -> str:
    """A list of objects: policy, hit_ratio, calls_per_day, stale_ratio, mean_latency_ms,
    p99_latency_ms (ratios 0..1), and for fixed TTLs the closed form under ``predicted``."""
    rows = [_row(workload, p, r) for p, r in zip(policies, results, strict=True)]
    return json.dumps(rows, indent=2)


def render_table(
    workload: Workload, policies: Sequence[Policy], results: Sequence[Result], console: Console
) -> None:
    table = Table(title=f"TTL lab: {workload.describe()}")
    table.add_column("policy")
    table.add_column("hit ratio", justify="right")
    table.add_column("Cal.com calls/day", justify="right")
    table.add_column("stale ratio", justify="right")
    table.add_column("mean ms", justify="right")
    table.add_column("p99 ms", justify="right")
    for policy, result in zip(policies, results, strict=True):
        hit = f"{result.hit_ratio:.1%}"
        calls = f"{result.calls_per_day:,.0f}"
        stale = f"{result.stale_ratio:.2%}"
        if policy.fixed is not None:
            p = predict(policy_workload(workload, policy), policy.fixed)
            hit += f" ({p.hit_ratio:.1%})"
            calls += f" ({p.slot_calls_per_day:,.0f} slots)"
            stale += f" ({p.stale_ratio:.2%})"
        table.add_row(
            result.policy,
            hit,
            calls,
            stale,
            f"{result.mean_latency_ms:.0f}",
            f"{result.p99_latency_ms:.0f}",
        )
    console.print(table)
    console.print("(closed form in brackets; see availability/lab/closed_form.py)")
