"""``--plot FILE.png``: GetSlots latency and Cal.com calls over the run, the outage marked.

Each point is one interval between two scrapes of ``/metrics``: p50 and p99 of
``grpc_server_handling_seconds`` over that interval (as ``histogram_quantile``
over ``rate()`` would give them), and the Cal.com requests of the interval per
second, split into those that succeeded and those that failed, with the calls
in the budget's sliding window against its limit. Dashed lines mark bookings
(reported, by webhook, unreported); a solid purple line the interval in which
``availability_refreshes_total{changed="true"}`` grew (a TTL refresh found the
unreported one). matplotlib is the optional extra ``demo`` and is imported
only here.
"""

# matplotlib is optional: imported inside the function, only when a plot is asked for.
# ruff: noqa: PLC0415

from __future__ import annotations

from pathlib import Path
from typing import Final

from availability.demo.story import SCRAPE_EVERY, Outcome

__all__ = ["INSTALL_HINT", "matplotlib_missing", "write_plot"]

INSTALL_HINT: Final = "pip install -e '.[demo]'"

_MARKS = {"booking": "tab:green", "webhook": "tab:cyan", "unreported": "tab:purple"}


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


def write_plot(outcome: Outcome, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt

    times, p50, p99, ok, failed, used, found = [], [], [], [], [], [], []
    for before, after in zip(outcome.snapshots, outcome.snapshots[1:], strict=False):
        interval = after.since(before)
        span = after.at - before.at
        if span < SCRAPE_EVERY / 2:
            continue  # the last scrape, right after the end: too short to be a rate
        times.append(after.at)
        p50.append(_ms(interval.latency_quantile(0.5)))
        p99.append(_ms(interval.latency_quantile(0.99)))
        succeeded = interval.upstream.get("ok", 0.0)
        ok.append(succeeded / span)
        failed.append((interval.calcom_calls - succeeded) / span)
        used.append(after.budget_used)
        if interval.refreshes.get("true", 0) > 0:
            found.append(after.at)  # a TTL refresh found a change nobody reported

    figure, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(9, 5.5), height_ratios=(3, 2), layout="constrained"
    )
    top.plot(times, p99, color="tab:red", label="p99")
    top.plot(times, p50, color="tab:blue", label="p50")
    top.set_yscale("log")
    top.set_ylabel("GetSlots latency (ms)")
    top.set_title(
        f"A busy hour in {outcome.timeline.seconds:.0f} s: "
        f"{outcome.final.total_calls:.0f} calls, hit rate {_percent(outcome.final.hit_rate)}, "
        f"{outcome.final.calcom_calls:.0f} Cal.com calls"
    )
    width = 0.8 * (times[1] - times[0]) if len(times) > 1 else 0.8
    bottom.bar(times, ok, width=width, color="tab:gray", label="answered")
    bottom.bar(times, failed, width=width, bottom=ok, color="tab:red", label="failed (503)")
    bottom.set_ylabel("Cal.com calls / s")
    window = bottom.twinx()  # the budget counts calls in a sliding minute, not per second
    window.plot(times, used, color="black", linewidth=1.2, label="calls in the budget window")
    window.axhline(
        outcome.final.budget_limit, color="black", linestyle=":", linewidth=1, label="budget"
    )
    window.set_ylim(0, outcome.final.budget_limit * 1.15)
    window.set_ylabel("in the window (budget)")
    bottom.set_xlabel("seconds since the start")
    begin, end = outcome.timeline.outage_window
    for axes in (top, bottom):
        axes.axvspan(begin, end, color="tab:red", alpha=0.12, label="Cal.com outage")
        for event in outcome.truth.events:
            if event.kind in _MARKS:
                axes.axvline(event.at, color=_MARKS[event.kind], linestyle="--", linewidth=1)
        for moment in found:
            axes.axvline(moment, color=_MARKS["unreported"], linewidth=2, alpha=0.6)
        axes.grid(alpha=0.3)
    for moment in found:
        top.annotate(
            "found by a TTL refresh",
            (moment, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="bottom",
            ha="right",
            fontsize=8,
            color=_MARKS["unreported"],
        )
    for event in outcome.truth.events:
        if event.kind in _MARKS:
            top.annotate(
                event.kind,
                (event.at, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
                color=_MARKS[event.kind],
            )
    top.legend(loc="center left", fontsize=8)  # between the p50 and p99 lines: empty
    bottom.set_ylim(0, max([a + b for a, b in zip(ok, failed, strict=True)] or [1]) * 1.6)
    bars, labels = bottom.get_legend_handles_labels()
    lines, more = window.get_legend_handles_labels()
    bottom.legend(bars + lines, labels + more, loc="upper left", fontsize=8, ncols=3)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _ms(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds * 1000


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
