"""Tracing, when enabled: a SERVER span per RPC continuing the caller's trace, the cache
read inside it, and each Cal.com request inside that; a clear refusal without OpenTelemetry."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError

from availability.adapters.observability.tracing import (
    INSTALL_HINT,
    TracingUnavailable,
    open_tracer,
)
from availability.config import Settings
from availability.core.clock import ManualClock
from availability.server import open_service
from availability.v1 import availability_pb2_grpc as pb_grpc
from tests.conftest import NOW
from tests.test_server import request

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def stub(
    settings: Settings, clock: ManualClock, exporter: InMemorySpanExporter
) -> AsyncIterator[pb_grpc.AvailabilityServiceAsyncStub]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = settings.model_copy(update={"tracing": True})
    async with (
        open_service(traced, clock=clock, tracer_provider=provider) as service,
        grpc.aio.insecure_channel(service.target) as channel,
    ):
        yield pb_grpc.AvailabilityServiceStub(channel)


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def ended(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The spans called ``name`` once the server has ended one: the server ends an RPC's
    span after the status went out, so the client can be back before it is exported."""
    for _ in range(500):
        spans = named(exporter.get_finished_spans(), name)
        if spans:
            return spans
        await asyncio.sleep(0.01)
    return []


async def test_an_rpc_its_cache_read_and_its_cal_com_requests_nest(
    stub: pb_grpc.AvailabilityServiceAsyncStub, exporter: InMemorySpanExporter
) -> None:
    await stub.GetSlots(
        request(1001, NOW, NOW + timedelta(days=2)), metadata=(("traceparent", TRACEPARENT),)
    )
    await ended(exporter, "availability.v1.AvailabilityService/GetSlots")
    spans = exporter.get_finished_spans()
    (rpc,) = named(spans, "availability.v1.AvailabilityService/GetSlots")
    (read,) = named(spans, "SlotCache.get_slots")
    calcom = named(spans, "Cal.com GET slots") + named(spans, "Cal.com GET event_type")
    assert rpc.kind is SpanKind.SERVER
    assert f"{rpc.context.trace_id:032x}" == TRACE_ID  # the caller's trace goes on
    assert rpc.attributes is not None
    assert rpc.attributes["rpc.method"] == "GetSlots"
    assert rpc.attributes["rpc.grpc.status_code"] == 0
    assert rpc.attributes["availability.source"] == "upstream"
    assert read.parent is not None
    assert read.parent.span_id == rpc.context.span_id
    assert [s.kind for s in calcom] == [SpanKind.CLIENT] * len(calcom)
    assert {s.parent.span_id for s in calcom if s.parent} == {read.context.span_id}
    (slots,) = named(spans, "Cal.com GET slots")
    assert slots.attributes is not None
    assert slots.attributes["http.response.status_code"] == 200
    assert slots.attributes["availability.outcome"] == "ok"


async def test_a_failed_rpc_is_an_error_span(
    stub: pb_grpc.AvailabilityServiceAsyncStub, exporter: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetSlots(request(1001, NOW, NOW + timedelta(days=1), time_zone="Mars/Base"))
    (rpc,) = await ended(exporter, "availability.v1.AvailabilityService/GetSlots")
    assert rpc.status.status_code is StatusCode.ERROR
    assert rpc.attributes is not None
    assert rpc.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_off_by_default_and_then_it_needs_nothing() -> None:
    assert Settings().tracing is False
    assert open_tracer(False) is None


def test_enabled_without_opentelemetry_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("opentelemetry", "opentelemetry.sdk"):
        monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ValidationError, match=re.escape(INSTALL_HINT)):
        Settings(tracing=True)
    with pytest.raises(TracingUnavailable, match=re.escape(INSTALL_HINT)):
        open_tracer(True)


async def test_with_tracing_a_fast_lane_hit_is_a_span_too(
    stub: pb_grpc.AvailabilityServiceAsyncStub, exporter: InMemorySpanExporter
) -> None:
    day = request(1001, NOW, NOW + timedelta(days=1))
    for _ in range(3):  # a miss, a normal-path hit (it makes the entry), a fast-lane hit
        await stub.GetSlots(day)
    name = "availability.v1.AvailabilityService/GetSlots"
    for _ in range(500):
        if len(named(exporter.get_finished_spans(), name)) == 3:
            break
        await asyncio.sleep(0.01)
    spans = named(exporter.get_finished_spans(), name)
    attributes = [dict(span.attributes or {}) for span in spans]
    assert [a["availability.source"] for a in attributes] == ["upstream", "cache", "cache"]
    assert [a.get("availability.fast_lane") for a in attributes] == [None, None, True]
