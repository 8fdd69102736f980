"""The lab's simulation against its closed form, and what its output promises scripts."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from availability.cli import app
from availability.config import Settings
from availability.core.adaptive_ttl import AdaptiveTtl
from availability.lab import Workload, parse_policy, predict, simulate
from availability.lab.workload import HOUR

# A week keeps CI short; the closed form's agreement does not depend on the length.
WEEK = Workload(days=7)


@pytest.fixture(scope="module")
def lab_json() -> list[dict[str, object]]:
    result = CliRunner().invoke(
        app,
        ["lab", "--days", "7", "--format", "json"]
        + [arg for ttl in (45, 60, 300) for arg in ("--policy", f"fixed:{ttl}")],
    )
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_json_rows_carry_the_documented_keys(lab_json: list[dict[str, object]]) -> None:
    keys = {"policy", "hit_ratio", "calls_per_day", "stale_ratio", "mean_latency_ms"}
    assert [row["policy"] for row in lab_json] == ["fixed:45", "fixed:60", "fixed:300"]
    for row in lab_json:
        assert keys | {"p99_latency_ms"} <= set(row)
        assert 0.0 <= float(row["hit_ratio"]) <= 1.0  # type: ignore[arg-type]
        assert 0.0 <= float(row["stale_ratio"]) <= 1.0  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_fixed_ttls_agree_with_the_closed_form_within_two_points(
    lab_json: list[dict[str, object]], index: int
) -> None:
    row = lab_json[index]
    predicted = row["predicted"]
    assert isinstance(predicted, dict)
    assert abs(float(row["hit_ratio"]) - predicted["hit_ratio"]) < 0.02  # type: ignore[arg-type]
    assert abs(float(row["stale_ratio"]) - predicted["stale_ratio"]) < 0.02  # type: ignore[arg-type]


def test_the_closed_form_reproduces_the_figures_derived_for_the_seed_workload() -> None:
    seed = Workload()
    figures = [predict(seed, ttl) for ttl in (45, 60, 300)]
    assert [round(f.hit_ratio, 2) for f in figures] == [0.74, 0.79, 0.94]
    assert [round(f.slot_calls_per_day) for f in figures] == [1242, 1018, 265]


def test_reporting_bookings_cuts_staleness_not_hits() -> None:
    fixed = parse_policy("fixed:300")
    silent = simulate(WEEK, fixed)
    reported = simulate(Workload(days=7, signaled=1.0), fixed)
    assert reported.stale_ratio < silent.stale_ratio / 10
    assert reported.hit_ratio > silent.hit_ratio - 0.02


def test_a_policy_can_carry_its_own_reported_share() -> None:
    own = parse_policy("fixed:300@1")
    assert (own.name, own.signaled, own.fixed) == ("fixed:300@1", 1.0, 300.0)
    assert simulate(WEEK, own) == simulate(Workload(days=7, signaled=1.0), own)


def test_the_same_seed_gives_the_same_run() -> None:
    policy = parse_policy("fixed:60")
    short = Workload(days=1, seed=3)
    assert simulate(short, policy) == simulate(short, policy)


def test_poisson_arrivals_follow_the_configured_rates() -> None:
    workload = Workload(days=7)
    times = list(workload.query_times(random.Random(1)))
    assert abs(len(times) / workload.days - workload.queries_per_day()) < 100
    peak = sum(1 for t in times if 8 * HOUR <= t % 86_400 < 10 * HOUR)
    assert abs(peak / workload.days - 10 * 120) < 60  # 10 a minute for two hours


def test_adaptive_runs_the_real_policy_from_the_settings_defaults() -> None:
    policy = parse_policy("adaptive@0.5")
    ttl = policy.ttl()
    assert isinstance(ttl, AdaptiveTtl)
    defaults = Settings.model_fields
    assert (ttl.minimum, ttl.maximum, ttl.stale_cost) == (
        defaults["ttl_min"].default,
        defaults["ttl_max"].default,
        defaults["ttl_stale_cost"].default,
    )
    assert ttl.tiers.near == defaults["ttl_near"].default
    assert (policy.name, policy.signaled, policy.fixed) == ("adaptive@0.5", 0.5, None)
    assert policy.ttl() is not ttl  # it learns: a new one per run
    assert parse_policy("adaptive:250").ttl().stale_cost == 250  # type: ignore[attr-defined]


def test_adaptive_spends_fewer_calls_when_every_booking_is_reported() -> None:
    # Nothing unreported to find: refreshes find no change and the TTL grows from the tier's;
    # with every booking hidden, they find changes and it does not.
    policy, tiered = parse_policy("adaptive"), simulate(WEEK, parse_policy("tiered"))
    reported = simulate(Workload(days=7, signaled=1.0), policy)
    silent = simulate(WEEK, policy)
    assert reported.changes_found == 0 < silent.changes_found
    assert reported.calls_per_day < 0.8 * tiered.calls_per_day
    assert reported.stale_ratio < tiered.stale_ratio / 5
    assert silent.calls_per_day > reported.calls_per_day * 1.2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("fixed:", "fixed:SECONDS"),
        ("fixed:-1", "positive"),
        ("lru", "unknown"),
        ("fixed:60@2", "0..1"),
        ("tiered@x", "SHARE"),
        ("adaptive:x", "adaptive:COST"),
        ("adaptive:0", "positive"),
    ],
)
def test_bad_policies_are_refused_in_one_line(text: str, problem: str) -> None:
    result = CliRunner().invoke(app, ["lab", "--policy", text, "--days", "1"])
    assert result.exit_code == 2
    assert problem in result.output
