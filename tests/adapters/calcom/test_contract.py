"""The adapter's requests and parsing checked against Cal.com's published OpenAPI spec.

Unit tests pin the request shape we *believe* Cal.com wants; these pin it to
what Cal.com *documents*, so a typo in a parameter name (which Cal.com
answers with 400) or a missing version header (404) cannot hide behind a
test that shares the typo. Requests are captured on the wire by the scripted
upstream, then validated with openapi-core.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import pytest
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import MissingRequiredParameter
from werkzeug.datastructures import Headers, ImmutableMultiDict

from availability.adapters.calcom.client import CalcomUpstream
from availability.core.slots import Slot
from tests.helpers.calcom_fixtures import event_types_spec, slots_spec
from tests.helpers.scripted_upstream import RecordedRequest, ScriptedUpstream

SLOTS_PATH = "/v2/slots"
EVENT_TYPE_PATH = "/v2/event-types/{eventTypeId}"
KEY = "cal_live_contract_test_key"
EVENT = 10
# The spec's servers entry: captured requests are replayed as if sent to it,
# since the scripted upstream's loopback address is not a server the spec knows.
HOST_URL = "https://api.cal.com"


@cache
def slots_document() -> dict[str, Any]:
    return slots_spec()


@cache
def event_type_document() -> dict[str, Any]:
    """The spec of the one event-type operation we call (with the schemas it needs)."""
    document = copy.deepcopy(event_types_spec())
    document["servers"] = [{"url": HOST_URL}]
    return document


@cache
def slots_openapi() -> OpenAPI:
    # The trimmed slots spec is valid OpenAPI 3.0, so it is checked on load.
    return OpenAPI.from_dict(slots_document())


@cache
def event_type_openapi() -> OpenAPI:
    # Cal.com's full spec does not pass openapi-spec-validator (unresolved path
    # parameters in unrelated operations, `default: true` on object schemas the
    # event-type output references). Only this operation's parameters are used,
    # so validating the document itself is skipped.
    return OpenAPI.from_dict(event_type_document(), config=Config(spec_validator_cls=None))


def operation(document: Mapping[str, Any], path: str) -> dict[str, Any]:
    op: dict[str, Any] = document["paths"][path]["get"]
    return op


def parameters(document: Mapping[str, Any], path: str, where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation(document, path)["parameters"] if p["in"] == where}


class CapturedOpenAPIRequest:
    """openapi-core's ``Request`` protocol over a request the scripted upstream recorded."""

    def __init__(self, recorded: RecordedRequest) -> None:
        self._recorded = recorded
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(recorded.query)),
            header=Headers(list(recorded.headers)),
        )

    @property
    def host_url(self) -> str:
        return HOST_URL

    @property
    def path(self) -> str:
        return self._recorded.path

    @property
    def method(self) -> str:
        return self._recorded.method.lower()

    @property
    def body(self) -> bytes | None:
        return None

    @property
    def content_type(self) -> str:
        return ""


def assert_conforms(
    app: OpenAPI, document: Mapping[str, Any], path: str, recorded: RecordedRequest
) -> None:
    app.validate_request(CapturedOpenAPIRequest(recorded))
    # openapi-core fills a missing required parameter from its schema default
    # (cal-api-version has one), so presence and value are checked here too.
    for name, spec in parameters(document, path, "header").items():
        if spec.get("required"):
            value = recorded.header(name)
            assert value is not None, f"required header {name} missing"
            default = spec.get("schema", {}).get("default")
            if default is not None:
                assert value == default, f"{name}: {spec.get('description')}"
    # Cal.com rejects query parameters it does not know with 400; the spec does not say so.
    allowed = set(parameters(document, path, "query"))
    sent = {name for name, _ in recorded.query}
    assert sent <= allowed, f"not in the spec: {sorted(sent - allowed)}"


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream.running() as scripted:
        yield scripted
        assert scripted.unscripted == 0


@pytest.mark.parametrize("api_key", [KEY, None], ids=["key", "anonymous"])
@pytest.mark.parametrize(
    ("first_day", "last_day", "duration"),
    [
        (date(2050, 9, 5), date(2050, 9, 5), 0),
        (date(2050, 9, 5), date(2050, 10, 4), 0),
        (date(2050, 12, 31), date(2051, 1, 1), 60),
    ],
    ids=["one-day", "thirty-days", "duration"],
)
async def test_slots_requests_conform(
    upstream: ScriptedUpstream, api_key: str | None, first_day: date, last_day: date, duration: int
) -> None:
    upstream.reply_json({"status": "success", "data": {}})

    async with CalcomUpstream(upstream.url, api_key=api_key) as cal:
        await cal.fetch_slots(EVENT, first_day, last_day, duration_minutes=duration)

    [recorded] = upstream.requests
    assert_conforms(slots_openapi(), slots_document(), SLOTS_PATH, recorded)
    # The values the parameter descriptions demand.
    params = recorded.params
    assert date.fromisoformat(params["start"]) == first_day
    assert date.fromisoformat(params["end"]) == last_day
    assert params["format"] in {"time", "range"}
    assert params["timeZone"] == "UTC"


async def test_event_type_request_conforms(upstream: ScriptedUpstream) -> None:
    upstream.reply_json({"status": "success", "data": {"id": EVENT, "ownerId": 1}})

    async with CalcomUpstream(upstream.url, api_key=KEY) as cal:
        await cal.fetch_event_type(EVENT)

    [recorded] = upstream.requests
    assert_conforms(event_type_openapi(), event_type_document(), EVENT_TYPE_PATH, recorded)


async def test_event_type_request_without_key_lacks_the_documented_authorization(
    upstream: ScriptedUpstream,
) -> None:
    # The spec makes Authorization required here (unlike /v2/slots). The adapter
    # still sends the call without a key (the sandbox needs none); real Cal.com
    # answers 401, which becomes UpstreamAuthError.
    upstream.reply_json({"status": "success", "data": {"id": EVENT}})

    async with CalcomUpstream(upstream.url) as cal:
        await cal.fetch_event_type(EVENT)

    with pytest.raises(MissingRequiredParameter, match="Authorization"):
        event_type_openapi().validate_request(CapturedOpenAPIRequest(upstream.requests[0]))


def _recorded(query: list[tuple[str, str]], headers: list[tuple[str, str]]) -> RecordedRequest:
    return RecordedRequest("GET", SLOTS_PATH, "", tuple(query), tuple(headers), None)


GOOD_QUERY = [("eventTypeId", "1"), ("start", "2050-09-05"), ("end", "2050-09-05")]
GOOD_HEADERS = [("cal-api-version", "2024-09-04")]


@pytest.mark.parametrize(
    "recorded",
    [
        _recorded([*GOOD_QUERY, ("timezone", "UTC")], GOOD_HEADERS),
        _recorded(GOOD_QUERY, []),
        _recorded(GOOD_QUERY, [("cal-api-version", "2024-06-14")]),
        _recorded(GOOD_QUERY[:2], GOOD_HEADERS),
    ],
    ids=["unknown-param", "no-version", "wrong-version", "no-end"],
)
def test_the_contract_check_catches_bad_requests(recorded: RecordedRequest) -> None:
    assert_conforms(
        slots_openapi(), slots_document(), SLOTS_PATH, _recorded(GOOD_QUERY, GOOD_HEADERS)
    )
    with pytest.raises((AssertionError, MissingRequiredParameter)):
        assert_conforms(slots_openapi(), slots_document(), SLOTS_PATH, recorded)


# -- the spec's own response examples -----------------------------------------------------

# The 200 response's schema is a oneOf whose members literally describe the
# `data` map (additionalProperties: array) rather than the envelope
# {"status": "success", "data": {...}} that Cal.com sends; the time-format
# member even says items are strings while its example has {"start": ...}
# objects. The schema cannot validate a real response, so the examples (which
# do show the envelope) are the contract for parsing.


def response_examples() -> dict[str, dict[str, Any]]:
    content = operation(slots_document(), SLOTS_PATH)["responses"]["200"]["content"]
    members = content["application/json"]["schema"]["oneOf"]
    examples = {m["title"]: copy.deepcopy(m["example"]) for m in members}
    assert len(examples) == 2
    return examples


def example(title_prefix: str) -> dict[str, Any]:
    [found] = [e for t, e in response_examples().items() if t.startswith(title_prefix)]
    return found


def epoch(text: str) -> int:
    """Independent of the adapter's parser: strptime, not fromisoformat."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp())


def expected_slots(body: Mapping[str, Any], duration_minutes: int) -> dict[date, list[Slot]]:
    by_day: dict[date, list[Slot]] = {}
    for items in body["data"].values():
        for item in items:
            start = epoch(item["start"])
            if "end" in item:
                end: int | None = epoch(item["end"])
            else:
                end = start + duration_minutes * 60 if duration_minutes else None
            day = datetime.fromtimestamp(start, UTC).date()
            by_day.setdefault(day, []).append(Slot(start, end))
    return {day: sorted(slots) for day, slots in by_day.items()}


def test_examples_are_envelopes() -> None:
    for body in response_examples().values():
        assert body["status"] == "success"
        assert isinstance(body["data"], dict)


@pytest.mark.parametrize(
    ("title_prefix", "duration"),
    [("Default format", 0), ("Default format", 60), ("Range format", 0)],
    ids=["time", "time-with-duration", "range"],
)
async def test_spec_examples_parse_to_their_times(
    upstream: ScriptedUpstream, title_prefix: str, duration: int
) -> None:
    body = example(title_prefix)
    upstream.reply_json(body)

    async with CalcomUpstream(upstream.url, api_key=KEY) as cal:
        slots = await cal.fetch_slots(
            EVENT, date(2050, 9, 5), date(2050, 9, 6), duration_minutes=duration
        )

    assert {day: list(day_slots) for day, day_slots in slots.items()} == expected_slots(
        body, duration
    )
    # Spot check without any parser: 09:00+02:00 is 07:00 UTC on the same day.
    first = slots[date(2050, 9, 5)][0]
    assert first.start == int(datetime(2050, 9, 5, 7, tzinfo=UTC).timestamp())
    assert sum(len(s) for s in slots.values()) == 4


async def test_time_example_plus_duration_equals_range_example(
    upstream: ScriptedUpstream,
) -> None:
    upstream.reply_json(example("Default format"))
    upstream.reply_json(example("Range format"))

    async with CalcomUpstream(upstream.url) as cal:
        timed = await cal.fetch_slots(
            EVENT, date(2050, 9, 5), date(2050, 9, 6), duration_minutes=60
        )
        ranged = await cal.fetch_slots(EVENT, date(2050, 9, 5), date(2050, 9, 6))

    assert timed == ranged
