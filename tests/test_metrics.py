"""``/metrics`` agrees with what happened: a scripted workload against the real server and
the sandbox, then the exposition parsed with prometheus-client's own parser."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import SecretStr

from availability.config import Settings
from availability.core.clock import ManualClock
from availability.core.local_days import utc_days
from availability.sandbox import RunningSandbox
from availability.server import RunningService, open_service
from availability.v1 import availability_pb2 as pb
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.helpers.redis_db import flushed_url
from tests.test_server import request, truth
from tests.transport.grpc.test_auth import READER, WRITER, bearer
from tests.transport.http.test_webhooks import SECRET, about, post

if TYPE_CHECKING:
    Stub = pb_grpc.AvailabilityServiceAsyncStub

ALICE_30, BOB_SEATED = 1001, 1004
SERVICE = "availability.v1.AvailabilityService"
NEAR_TTL = 60
REDIS_DB = 8


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "api_tokens": SecretStr(f"{READER}:reader,{WRITER}:writer"),
            "webhook_secret": SecretStr(SECRET),
        }
    )


@pytest.fixture
async def http(service: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.http_url) as client:
        yield client


class Exposition:
    """The samples of one scrape, by name."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[Sample]] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append(sample)

    def total(self, name: str, **labels: str) -> float:
        """Sum of ``name`` over the samples whose labels include ``labels``."""
        return sum(
            s.value
            for s in self.samples.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.samples.get(name, []):
            if all(s.labels.get(k) == v for k, v in labels.items()):
                out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
        return out


async def scrape(http: httpx.AsyncClient) -> Exposition:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Exposition(response.text)


class Workload:
    """Calls GetSlots and keeps what the caller saw: status codes, sources, buckets asked."""

    def __init__(self, stub: Stub, clock: ManualClock) -> None:
        self.stub = stub
        self.clock = clock
        self.codes: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.buckets_asked = 0

    async def get(
        self, req: pb.GetSlotsRequest, token: str | None = READER
    ) -> pb.GetSlotsResponse | None:
        try:
            response: pb.GetSlotsResponse = await self.stub.GetSlots(
                req, metadata=bearer(token) if token else None
            )
        except grpc.aio.AioRpcError as exc:
            self.codes[exc.code().name] += 1
            return None
        self.codes["OK"] += 1
        self.sources[SOURCES[response.freshness.source]] += 1
        start = max(req.start.ToSeconds(), self.clock())
        if start < req.end.ToSeconds():
            self.buckets_asked += len(utc_days(start, req.end.ToSeconds()))
        return response


GO_NAMES = {
    "OK": "OK",
    "INVALID_ARGUMENT": "InvalidArgument",
    "UNAUTHENTICATED": "Unauthenticated",
    "PERMISSION_DENIED": "PermissionDenied",
}
SOURCES = {
    pb.Freshness.SOURCE_UNSPECIFIED: "none",
    pb.Freshness.SOURCE_CACHE: "cache",
    pb.Freshness.SOURCE_UPSTREAM: "upstream",
    pb.Freshness.SOURCE_STALE: "stale",
}


async def test_metrics_agree_with_a_scripted_workload(
    stub: Stub,
    http: httpx.AsyncClient,
    sandbox: RunningSandbox,
    clock: ManualClock,
) -> None:
    work = Workload(stub, clock)
    week = (NOW, NOW + timedelta(days=7))
    tuesday = (NOW + timedelta(days=1), NOW + timedelta(days=2))
    await work.get(request(ALICE_30, *week, "Europe/Berlin"))  # cold: 7 misses
    for _ in range(3):
        await work.get(request(ALICE_30, *tuesday))  # hits on Tuesday's bucket
    await work.get(request(BOB_SEATED, *week))
    await work.get(request(ALICE_30, *tuesday, consistency=pb.CONSISTENCY_FRESH))
    await work.get(request(ALICE_30, NOW - timedelta(days=2), NOW - timedelta(days=1)))  # past
    await work.get(request(ALICE_30, *week, "Mars/Base"))  # InvalidArgument
    await work.get(request(ALICE_30, *week), token=None)  # refused before it is parsed
    refused = await stub.InvalidateSlots(
        pb.InvalidateSlotsRequest(event_type_id=ALICE_30), metadata=bearer(WRITER)
    )
    assert ALICE_30 in refused.event_type_ids
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.InvalidateSlots(
            pb.InvalidateSlotsRequest(event_type_id=ALICE_30), metadata=bearer(READER)
        )
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    await work.get(request(ALICE_30, *week))  # refetched after the invalidation
    hits_on_tuesday = 2
    for _ in range(hits_on_tuesday):
        await work.get(request(ALICE_30, *tuesday))

    # Booked on Cal.com and reported by nobody; the TTL is the only safety net.
    first_free = truth(sandbox, ALICE_30, *tuesday)[0][1][0]
    sandbox.calendar.book(ALICE_30, first_free)
    clock.advance(NEAR_TTL)
    after = await work.get(request(ALICE_30, *tuesday))
    assert after is not None
    assert first_free not in [s.start.seconds for d in after.days for s in d.slots]

    # A signed webhook, and a forged one.
    booked = sandbox.calendar.book(BOB_SEATED, truth(sandbox, BOB_SEATED, *tuesday)[0][1][0])
    assert (await post(http, about(booked))).status_code == 200
    assert (await post(http, about(booked), sig="0" * 64)).status_code == 401

    seen = await scrape(http)
    assert seen.types["grpc_server_handled"] == "counter"
    assert seen.types["grpc_server_handling_seconds"] == "histogram"

    # Every GetSlots, by the code its caller saw, refusals included.
    handled = seen.by("grpc_server_handled_total", "grpc_code", grpc_method="GetSlots")
    assert handled == {GO_NAMES[code]: n for code, n in work.codes.items()}
    assert work.codes == {"OK": 11, "INVALID_ARGUMENT": 1, "UNAUTHENTICATED": 1}
    calls = sum(work.codes.values())
    labels = {"grpc_service": SERVICE, "grpc_method": "GetSlots", "grpc_type": "unary"}
    assert seen.total("grpc_server_started_total", **labels) == calls
    assert seen.total("grpc_server_handling_seconds_count", **labels) == calls
    assert seen.total("grpc_server_handling_seconds_bucket", le="+Inf", **labels) == calls
    assert seen.by("grpc_server_handled_total", "grpc_code", grpc_method="InvalidateSlots") == {
        "OK": 1,
        "PermissionDenied": 1,
    }

    # Every Cal.com request the sandbox received, and no other.
    assert seen.total("availability_upstream_requests_total", endpoint="slots") == (
        sandbox.requests.calls("/v2/slots")
    )
    event_type_paths = sum(1 for r in sandbox.requests if r.path.startswith("/v2/event-types/"))
    assert seen.total("availability_upstream_requests_total", endpoint="event_type") == (
        event_type_paths
    )
    assert seen.total("availability_upstream_request_duration_seconds_count") == len(
        sandbox.requests
    )
    assert seen.total("availability_budget_used") == len(sandbox.requests)  # all in one window
    assert seen.total("availability_budget_limit") == 120
    assert seen.total("availability_budget_denied_total") == 0

    # One lookup per bucket asked; one answer per successful call, by source.
    lookups = seen.by("availability_cache_lookups_total", "result")
    assert sum(lookups.values()) == work.buckets_asked
    assert lookups["bypass"] == 2  # the fresh read: "Tuesday" from 06:00 spans two UTC days
    assert lookups["hit"] > 0
    answers = seen.by("availability_answers_total", "source")
    assert {k: v for k, v in answers.items() if v} == work.sources
    assert seen.total("availability_answer_age_seconds_count") == work.codes["OK"]

    # The unreported booking: Tuesday's refresh found it; the hits on its bucket are suspect.
    refreshes = seen.by("availability_refreshes_total", "changed")
    assert refreshes["true"] == 1
    assert seen.total("availability_suspect_hits_total") == hits_on_tuesday

    assert seen.by("availability_invalidations_total", "origin") == {"rpc": 1, "webhook": 1}
    assert seen.by("availability_webhook_deliveries_total", "outcome") == {
        "invalidated": 1,
        "bad_signature": 1,
    }
    # No id of an event type or a host is ever a label.
    for samples in seen.samples.values():
        for sample in samples:
            assert not {"event_type_id", "host_id", "event_type"} & set(sample.labels)


async def test_openmetrics_is_served_when_asked_for(http: httpx.AsyncClient) -> None:
    response = await http.get(
        "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "grpc_server_started" in response.text


async def test_each_service_counts_only_its_own(
    stub: Stub, settings: Settings, clock: ManualClock, http: httpx.AsyncClient
) -> None:
    async with (
        open_service(settings, clock=clock) as other,
        httpx.AsyncClient(base_url=other.http_url) as other_http,
    ):
        await stub.GetSlots(
            request(ALICE_30, NOW, NOW + timedelta(days=1)), metadata=bearer(READER)
        )
        mine, theirs = await scrape(http), await scrape(other_http)
    assert mine.total("grpc_server_started_total", grpc_method="GetSlots") == 1
    assert theirs.total("grpc_server_started_total", grpc_method="GetSlots") == 0
    assert theirs.total("availability_upstream_requests_total") == 0


async def test_with_redis_the_tier_and_the_cluster_wide_budget_are_exposed(
    settings: Settings, clock: ManualClock, sandbox: RunningSandbox
) -> None:
    shared = settings.model_copy(update={"cache_url": flushed_url(REDIS_DB)})
    try:
        async with (
            open_service(shared, clock=clock) as first,
            open_service(shared, clock=clock) as second,
            grpc.aio.insecure_channel(first.target) as channel,
            httpx.AsyncClient(base_url=first.http_url) as first_http,
            httpx.AsyncClient(base_url=second.http_url) as second_http,
        ):
            week = request(ALICE_30, NOW, NOW + timedelta(days=7))
            stub = pb_grpc.AvailabilityServiceStub(channel)
            await stub.GetSlots(week, metadata=bearer(READER))
            # The hosts' look-up follows a cold answer: the next read waits for it to store.
            await stub.GetSlots(week, metadata=bearer(READER))
            mine, theirs = await scrape(first_http), await scrape(second_http)
    finally:
        flushed_url(REDIS_DB)
    calls = len(sandbox.requests)
    assert calls > 0
    assert mine.total("availability_upstream_requests_total") == calls
    assert theirs.total("availability_upstream_requests_total") == 0
    # One budget for the cluster: the replica that made no call sees the other's.
    assert mine.total("availability_budget_used") == theirs.total("availability_budget_used")
    assert theirs.total("availability_budget_used") == calls
    assert mine.total("availability_local_tier_buckets") == 8  # 06:00 + 7 days: 8 UTC days
    assert mine.total("availability_local_tier_evictions_total") == 0
    assert mine.total("availability_redis_degraded") == 0
    assert mine.types["availability_trust_renewals"] == "counter"  # how many: timing decides
    assert theirs.total("availability_local_tier_buckets") == 0
