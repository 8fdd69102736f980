"""``availability lab``: compare TTL policies on a simulated workload."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from availability.lab.policies import parse_policy
from availability.lab.report import compare, render_json, render_table
from availability.lab.workload import Workload

__all__ = ["DEFAULT_POLICIES", "lab"]

DEFAULT_POLICIES = ("fixed:45", "fixed:60", "fixed:300", "tiered", "adaptive")
_DEFAULTS = Workload()


def lab(
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="fixed:SECONDS, tiered or adaptive[:COST], optionally @SHARE (its own "
            "reported share); repeat "
            f"[default: {' '.join(DEFAULT_POLICIES)}]"
        ),
    ] = None,
    signaled: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of bookings reported (0 = none)")
    ] = _DEFAULTS.signaled,
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = _DEFAULTS.days,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same run)")] = _DEFAULTS.seed,
    output: Annotated[
        str, typer.Option("--format", help="table or json (a list of objects)")
    ] = "table",
    event_types: Annotated[
        int, typer.Option(min=1, help="event types, Zipf popularity")
    ] = _DEFAULTS.event_types,
    zipf: Annotated[float, typer.Option(min=0.0, help="Zipf exponent")] = _DEFAULTS.zipf,
    spread_days: Annotated[
        int, typer.Option(min=1, help="queries ask about one of the next N days (1: tomorrow)")
    ] = _DEFAULTS.spread_days,
    range_days: Annotated[
        int, typer.Option(min=1, help="days each query covers")
    ] = _DEFAULTS.range_days,
    peak_qpm: Annotated[
        float, typer.Option(min=0.0, help="queries a minute in peak hours (08-10, 14-16 UTC)")
    ] = _DEFAULTS.peak_queries_per_minute,
    offpeak_qpm: Annotated[
        float, typer.Option(min=0.0, help="queries a minute otherwise")
    ] = _DEFAULTS.offpeak_queries_per_minute,
    bookings_per_hour: Annotated[
        float, typer.Option(min=0.0, help="bookings an hour per event type")
    ] = _DEFAULTS.bookings_per_hour,
    latency: Annotated[
        float, typer.Option(min=0.0, help="Cal.com's latency, seconds")
    ] = _DEFAULTS.latency,
) -> None:
    """Simulate a workload against the real cache core on virtual time, one run per policy.

    The default workload is the seed analysis's (one event type, 10/2 queries a
    minute peak/off-peak, 1.5 bookings an hour, Cal.com 550 ms); for fixed TTLs
    the closed form is printed beside the simulation so each checks the other.
    """
    if output not in ("table", "json"):
        typer.echo("availability lab: --format must be table or json", err=True)
        raise typer.Exit(2)
    try:
        policies = [parse_policy(text) for text in (policy or DEFAULT_POLICIES)]
        workload = Workload(
            days=days,
            peak_queries_per_minute=peak_qpm,
            offpeak_queries_per_minute=offpeak_qpm,
            bookings_per_hour=bookings_per_hour,
            latency=latency,
            signaled=signaled,
            event_types=event_types,
            zipf=zipf,
            spread_days=spread_days,
            range_days=range_days,
            seed=seed,
        )
    except ValueError as exc:
        typer.echo(f"availability lab: {exc}", err=True)
        raise typer.Exit(2) from None
    console = Console(stderr=True)
    with console.status(f"simulating {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}"):
        results = compare(workload, policies)
    if output == "json":
        sys.stdout.write(render_json(workload, policies, results) + "\n")
    else:
        render_table(workload, policies, results, Console())
