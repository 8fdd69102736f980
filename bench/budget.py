"""What a steady load costs Cal.com's budget: per-day fetches against whole windows and
refresh-ahead, side by side on the same workload and virtual clock.

The TTL lab's simulation (the real SlotCache, memory store, versions, single-flight
and budget, on a time-skipping loop; only Cal.com simulated, with its latency) plays
callers asking random days of the next ``--spread`` days across ``--event-types``
equally popular event types, and prints per configuration:

- calls per event type per near TTL (the issue's figure; Cal.com's whole budget is
  120 calls a minute per key),
- calls refused by the budget (what would have been Cal.com's 429s),
- the share of answers that waited for Cal.com (the cold start included: a few dozen
  calls in a simulated day of tens of thousands of answers),
- the stale share (answers offering a slot already taken, known exactly).

    .venv/bin/python bench/budget.py
    .venv/bin/python bench/budget.py --event-types 40 --per-minute 120 --days 2
"""

from __future__ import annotations

import argparse

from availability.config import Settings
from availability.core.windows import FetchWindows
from availability.lab.policies import parse_policy
from availability.lab.simulation import Features, simulate
from availability.lab.workload import Workload


def main() -> None:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--event-types", type=int, default=20)
    parser.add_argument("--spread", type=int, default=14, help="days ahead callers ask about")
    parser.add_argument("--per-minute", type=float, default=60.0, help="queries a minute, all")
    parser.add_argument("--days", type=int, default=1, help="simulated days")
    parser.add_argument("--bookings", type=float, default=1.5, help="per event type and hour")
    parser.add_argument("--signaled", type=float, default=0.9)
    parser.add_argument("--latency", type=float, default=0.55, help="Cal.com seconds per call")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    near_days = float(defaults["ttl_near_days"].default)
    near_ttl = float(defaults["ttl_near"].default)
    windows = FetchWindows(near_days, float(defaults["far_window_days"].default))
    ahead = float(defaults["refresh_ahead"].default)
    configs = [
        ("per day (before)", Features()),
        ("whole windows", Features(windows=windows)),
        (f"windows + refresh-ahead {ahead:g}", Features(windows=windows, refresh_ahead=ahead)),
    ]
    workload = Workload(
        days=args.days,
        peak_queries_per_minute=args.per_minute,
        offpeak_queries_per_minute=args.per_minute,
        bookings_per_hour=args.bookings,
        latency=args.latency,
        signaled=args.signaled,
        event_types=args.event_types,
        zipf=0.0,
        spread_days=args.spread,
        seed=args.seed,
    )
    minutes = workload.days * 24 * 60
    policy = parse_policy("tiered")
    print(
        f"# {args.event_types} event types, {args.per_minute:g} queries/min over the next "
        f"{args.spread} days, {args.bookings:g} bookings/h each ({args.signaled:.0%} reported), "
        f"Cal.com {args.latency * 1000:.0f} ms; {workload.days} simulated day(s); "
        f"tiered TTLs, near {near_ttl:g} s"
    )
    header = ("configuration", "calls/ET/near TTL", "calls/min", "refused", "waited", "stale")
    print(f"{header[0]:<32}" + "".join(f"{h:>18}" for h in header[1:]))
    for name, features in configs:
        result = simulate(workload, policy, features)
        calls = result.slot_calls + result.event_type_calls
        per_minute = calls / minutes
        per_et_ttl = per_minute / args.event_types * near_ttl / 60
        row = (
            f"{per_et_ttl:.2f}",
            f"{per_minute:.1f}",
            f"{result.errors}",
            f"{1 - result.hit_ratio:.2%}",
            f"{result.stale_ratio:.2%}",
        )
        print(f"{name:<32}" + "".join(f"{v:>18}" for v in row))


if __name__ == "__main__":
    main()
