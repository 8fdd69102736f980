"""The demo's terminal: a live dashboard while the hour plays, a summary table after.

Every figure but one comes from the service's ``/metrics``; "taken slots
offered" is the demo's own check of each answer against the bookings made, the
ground truth that ``availability_suspect_hits_total`` bounds from above.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from availability.demo.figures import Snapshot
from availability.demo.story import Outcome, Timeline, Truth

__all__ = ["live_view", "summary"]

SEED_TARGETS = {
    "hit_rate": 0.75,
    "staleness": 0.02,
    "latency": 0.150,
}
"""The seed's KPIs: cache_hit_rate > 75 %, staleness_rate < 2 %, avg_response_time < 150 ms.
(daily_api_calls < 1,500 cannot be judged from a compressed hour: its TTLs are scaled.)"""


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


def live_view(snapshot: Snapshot, truth: Truth, timeline: Timeline) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    calls = ", ".join(f"{code} {n:.0f}" for code, n in sorted(snapshot.calls.items()) if n)
    table.add_row("GetSlots calls", f"{snapshot.total_calls:.0f}", calls)
    table.add_row("hit rate", _percent(snapshot.hit_rate), "cache lookups that were hits")
    table.add_row(
        "latency p50 / p99",
        f"{_ms(snapshot.latency_quantile(0.5))} / {_ms(snapshot.latency_quantile(0.99))}",
        f"average {_ms(snapshot.average_latency)}",
    )
    table.add_row(
        "Cal.com calls",
        f"{snapshot.calcom_calls:.0f}",
        f"budget: {snapshot.budget_used:.0f} of {snapshot.budget_limit:.0f} in the window, "
        f"{snapshot.budget_denied:.0f} denied",
    )
    table.add_row("stale answers", f"{snapshot.answers.get('stale', 0):.0f}", "Cal.com failing")
    table.add_row(
        "refreshes changed / all",
        f"{snapshot.refreshes.get('true', 0):.0f} / {sum(snapshot.refreshes.values()):.0f}",
        "a change nobody reported, found by a TTL refresh",
    )
    table.add_row(
        "suspect hits", f"{snapshot.suspect_hits:.0f}", "served from a bucket found changed"
    )
    table.add_row(
        "taken slots offered",
        f"{truth.taken_offered}",
        f"of {truth.answers} answers (checked by the demo against Cal.com's bookings)",
    )
    table.add_row(
        "invalidations",
        ", ".join(f"{k} {v:.0f}" for k, v in sorted(snapshot.invalidations.items())),
        "booking service (rpc), Cal.com (webhook)",
    )
    events = Text()
    for event in truth.events[-6:]:
        events.append(
            f"{event.at:5.1f} s  {event.kind:<10} {event.text}\n", style=_STYLE[event.kind]
        )
    begin, end = timeline.outage_window
    phase = "Cal.com outage" if begin <= snapshot.at < end else "busy hour"
    title = (
        f"slot availability: a busy hour in {timeline.seconds:.0f} s "
        f"(t = {snapshot.at:.0f} s, {phase})"
    )
    return Panel(Group(table, Text(), events), title=title, title_align="left")


_STYLE = {
    "booking": "green",
    "webhook": "cyan",
    "unreported": "magenta",
    "outage": "red",
    "recovered": "yellow",
}


def summary(outcome: Outcome) -> RenderableType:
    final, truth = outcome.final, outcome.truth
    kpis = Table(title="The seed's KPIs, from /metrics", title_justify="left")
    kpis.add_column("KPI")
    kpis.add_column("measured", justify="right")
    kpis.add_column("seed target", justify="right")
    kpis.add_column("met", justify="center")
    hit_rate, staleness, latency = final.hit_rate, final.staleness_rate, final.average_latency
    kpis.add_row(
        "cache hit rate",
        _percent(hit_rate),
        "> 75 %",
        _met(hit_rate is not None and hit_rate > SEED_TARGETS["hit_rate"]),
    )
    kpis.add_row(
        "staleness rate (suspect hits / hits)",
        _percent(staleness),
        "< 2 %",
        _met(staleness is not None and staleness < SEED_TARGETS["staleness"]),
    )
    kpis.add_row(
        "  answers that offered a taken slot (the demo's check)",
        _percent(truth.taken_offered / truth.answers if truth.answers else None),
        "",
        "",
    )
    kpis.add_row(
        "avg response time",
        _ms(latency),
        "< 150 ms",
        _met(latency is not None and latency < SEED_TARGETS["latency"]),
    )
    kpis.add_row(
        "Cal.com calls",
        f"{final.calcom_calls:.0f} in {outcome.timeline.seconds:.0f} s",
        "< 1,500 a day",
        "n/a",
    )
    details = Table.grid(padding=(0, 2))
    details.add_column(style="bold")
    details.add_column()
    details.add_row(
        "GetSlots p50 / p99",
        f"{_ms(final.latency_quantile(0.5))} / {_ms(final.latency_quantile(0.99))}",
    )
    details.add_row("answers by source", _pairs(final.answers))
    details.add_row("cache lookups", _pairs(final.lookups))
    details.add_row("Cal.com requests", _pairs(final.upstream))
    details.add_row("refreshes (changed)", _pairs(final.refreshes))
    details.add_row(
        "suspect hits",
        f"{final.suspect_hits:.0f} (bound) vs {truth.taken_offered} answers that offered a "
        f"taken slot (truth)",
    )
    details.add_row("webhook deliveries", _pairs(final.webhooks))
    details.add_row("failed calls (demo)", _pairs({k: float(v) for k, v in truth.failures.items()}))
    checks = Text()
    for text, ok in outcome.checks:
        checks.append(
            ("ok   " if ok else "FAIL ") + text + "\n", style="green" if ok else "bold red"
        )
    return Group(
        kpis, Text(), details, Text(), Text("/metrics against the demo's own count:"), checks
    )


def _met(ok: bool) -> Text:
    return Text("yes", style="green") if ok else Text("no", style="red")


def _pairs(values: dict[str, float]) -> str:
    shown = [f"{k} {v:.0f}" for k, v in sorted(values.items()) if v]
    return ", ".join(shown) or "-"
