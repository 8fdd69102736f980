"""Local-date grouping on Europe/Berlin's DST days, end to end.

dana (Australia/Sydney, event type 1007) starts work on Monday at 09:00 AEDT,
22:00 UTC on Sunday: whether that is Sunday or Monday in Berlin depends on
Berlin's offset, which changes on those Sundays.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from availability.core.clock import ManualClock
from availability.sandbox import RunningSandbox
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.test_server import answer_starts, request, truth

DANA = 1007


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 20, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("start", "end", "berlin_dates"),
    [
        # Berlin falls back on 2026-10-25: 23:00 CET on the 25th is 22:00 UTC.
        ("2026-10-25T00:00:00", "2026-10-26T12:00:00", {"2026-10-25", "2026-10-26"}),
        # Berlin springs forward on 2026-03-29: 22:00 UTC that evening is already
        # 00:00 CEST on the 30th (it would be 23:00 on the 29th at the old offset).
        ("2026-03-29T00:00:00", "2026-03-30T12:00:00", {"2026-03-30"}),
    ],
)
async def test_berlin_dst_days_group_by_local_date(
    stub: pb_grpc.AvailabilityServiceAsyncStub,
    sandbox: RunningSandbox,
    start: str,
    end: str,
    berlin_dates: set[str],
) -> None:
    lo = datetime.fromisoformat(start).replace(tzinfo=UTC)
    hi = datetime.fromisoformat(end).replace(tzinfo=UTC)
    response = await stub.GetSlots(request(DANA, lo, hi, time_zone="Europe/Berlin"))
    got = answer_starts(response)
    assert got == truth(sandbox, DANA, lo, hi, "Europe/Berlin")
    assert {date for date, _ in got} == berlin_dates
