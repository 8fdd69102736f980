"""``availability demo``, run as a user runs it: a real process, its summary, its plot."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from availability.demo.figures import Snapshot, quantile
from tests.test_cli import AVAILABILITY, _env

SHORT = "6"  # seconds: the whole story, compressed further, to keep CI time small


def test_the_demo_tells_its_story_checks_the_metrics_and_plots_it(tmp_path: Path) -> None:
    png = tmp_path / "demo.png"
    done = subprocess.run(
        [AVAILABILITY, "demo", "--seconds", SHORT, "--seed", "3", "--plot", str(png)],
        env=_env(COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "The seed's KPIs, from /metrics" in out
    for kpi in ("cache hit rate", "staleness rate", "avg response time", "Cal.com calls"):
        assert kpi in out
    # The demo checks /metrics against its own count and the sandbox's: both agreed.
    assert "ok   GetSlots calls counted by /metrics" in out
    assert "ok   Cal.com /v2/slots requests counted by /metrics" in out
    assert "FAIL" not in out
    assert "Cal.com answers 503" in out  # the outage happened
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert done.stderr == ""


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    hide = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from availability.cli import main; sys.argv[0] = 'availability'; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide, "demo", "--plot", str(tmp_path / "x.png")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["availability: --plot needs matplotlib: pip install -e '.[demo]'"]
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.0015),  # rank 50 of 100: halfway into (0.001, 0.002]
        (0.9, 0.002),  # rank 90: the end of (0.001, 0.002]
        (0.95, 0.0035),  # rank 95: halfway into (0.002, 0.005]
        (1.0, 0.005),  # the top of the last finite bucket that holds anything
    ],
)
def test_quantiles_interpolate_like_histogram_quantile(q: float, expected: float) -> None:
    buckets = {0.001: 10.0, 0.002: 90.0, 0.005: 100.0, math.inf: 100.0}
    assert quantile(q, buckets) == pytest.approx(expected)


def test_a_quantile_in_the_overflow_bucket_is_the_last_bound() -> None:
    assert quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == 0.1
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_a_snapshot_reads_the_exposition_and_intervals_subtract() -> None:
    text = "\n".join(
        [
            'grpc_server_handled_total{grpc_service="availability.v1.AvailabilityService",'
            'grpc_method="GetSlots",grpc_type="unary",grpc_code="OK"} 7',
            'grpc_server_handled_total{grpc_service="grpc.health.v1.Health",'
            'grpc_method="Check",grpc_type="unary",grpc_code="OK"} 99',
            'availability_cache_lookups_total{result="hit"} 30',
            'availability_cache_lookups_total{result="miss"} 10',
            'availability_cache_lookups_total{result="bypass"} 5',
            "availability_suspect_hits_total 3",
            'availability_upstream_requests_total{endpoint="slots",outcome="ok"} 4',
            'availability_upstream_requests_total{endpoint="event_type",outcome="ok"} 1',
            "",
        ]
    )
    later = Snapshot.parse(text, 10.0)
    assert later.total_calls == 7  # health checks are not GetSlots
    assert later.hit_rate == 0.75  # fresh reads (bypass) are not cache lookups
    assert later.staleness_rate == 0.1
    assert (later.calcom_calls, later.upstream_slots) == (5, 4)
    interval = later.since(Snapshot.parse(text.replace("} 30", "} 20"), 5.0))
    assert interval.lookups["hit"] == 10
    assert interval.lookups["miss"] == 0
