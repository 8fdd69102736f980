"""``availability demo``: a compressed busy hour against the sandbox, watched through ``/metrics``.

One command, no setup: it starts the sandbox Cal.com and the service in this
process on free loopback ports, plays the hour (:mod:`.story`), shows a live
dashboard and a summary (:mod:`.dashboard`) built from the service's own
metrics (:mod:`.figures`), checks them against what the demo itself did, and
with ``--plot`` draws the run (:mod:`.plot`). Nothing outlives it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.live import Live

from availability.demo.dashboard import live_view, summary
from availability.demo.figures import Snapshot
from availability.demo.plot import write_plot
from availability.demo.story import Outcome, Timeline, Truth, play

__all__ = ["run_demo"]


def run_demo(
    seconds: float,
    *,
    plot: Path | None = None,
    callers: int = 4,
    seed: int | None = None,
    console: Console | None = None,
) -> Outcome:
    """Play the hour in ``seconds``; the outcome (its ``checks`` say whether /metrics agreed)."""
    console = console or Console()
    timeline = Timeline(seconds)
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def show(snapshot: Snapshot, truth: Truth) -> None:
            live.update(live_view(snapshot, truth, timeline))

        outcome = asyncio.run(play(timeline, callers=callers, seed=seed, on_scrape=show))
    console.print(live_view(outcome.final, outcome.truth, timeline))
    console.print(summary(outcome))
    if plot is not None:
        write_plot(outcome, plot)
        console.print(f"plot written to {plot}")
    return outcome
