from __future__ import annotations

import json

from availability.core.buckets import Bucket
from availability.core.slots import Seats, Slot


def test_json_round_trip_is_plain_data() -> None:
    bucket = Bucket(
        fetched_at=1.5,
        expires_at=61.5,
        stamp=7,
        slots=(Slot(100, 200), Slot(300, None, Seats(5, 2, 3, "uid-1"))),
    )
    text = json.dumps(bucket.to_json())
    assert Bucket.from_json(json.loads(text)) == bucket


def test_index_at_gives_half_open_ranges() -> None:
    bucket = Bucket(0, 1, 0, tuple(Slot(s, s + 10) for s in (100, 200, 300)))

    def starting_in(lo: float, hi: float) -> list[int]:
        first = bucket.index_at(lo)
        return [s.start for s in bucket.slots[first : bucket.index_at(hi, first)]]

    assert starting_in(100, 300) == [100, 200]
    assert starting_in(101, 301) == [200, 300]
    assert starting_in(400, 500) == []
