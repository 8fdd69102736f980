"""The Cal.com adapter: :class:`availability.core.ports.Upstream` over Cal.com's HTTP API v2.

Everything Cal.com-specific lives here so the cache core never sees HTTP:
request shape (API version headers, query parameters Cal.com accepts), the
response formats, and the mapping of every failure onto the port's error
classes. Cal.com's rate limit is shared by the whole fleet, so the adapter
never retries; it reports and lets the caller decide.

Every HTTP request it sends is reported exactly once, whatever became of it,
to an optional ``on_request(endpoint, outcome, seconds)`` callback (the
metrics: so their count equals what Cal.com saw), as one DEBUG log line, and
as an OpenTelemetry span when a tracer is given. Endpoints are ``slots`` and
``event_type``; outcomes are listed in :data:`OUTCOMES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import httpx

from availability.adapters.observability import tracing
from availability.adapters.observability.logs import log_fields
from availability.core.ports import (
    EventTypeInfo,
    EventTypeNotFound,
    Priority,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from availability.core.slots import Seats, Slot

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = [
    "EVENT_TYPES_API_VERSION",
    "OUTCOMES",
    "SLOTS_API_VERSION",
    "CalcomUpstream",
    "RequestObserver",
]

T = TypeVar("T")

RequestObserver = Callable[[str, str, float], None]
"""Called once per HTTP request to Cal.com: ``(endpoint, outcome, seconds)``."""

OUTCOMES: Final = (
    "ok",  # 2xx with a body in Cal.com's documented shape
    "not_found",  # 404
    "rejected",  # any other 4xx but 429: our request or our key was refused
    "rate_limited",  # 429
    "server_error",  # 5xx
    "timeout",  # no complete answer within the deadline
    "connection",  # could not connect, or the connection broke
    "malformed",  # a body that is not what Cal.com documents, too large, or a 1xx/3xx
    "cancelled",  # the caller gave up while the request was in flight
)

logger = logging.getLogger(__name__)

SLOTS_API_VERSION: Final = "2024-09-04"
"""Without it Cal.com routes ``/v2/slots`` to an older controller that 404s."""
EVENT_TYPES_API_VERSION: Final = "2024-06-14"
"""The event-type output version whose fields (ownerId, users, hosts) we read."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MESSAGE_CHARS: Final = 200
_SEAT_FIELDS: Final = ("seatsTotal", "seatsBooked", "seatsRemaining", "bookingUid")


class _Malformed(Exception):
    """Internal: the body is not what Cal.com documents. Becomes UpstreamUnavailable."""


class _ApiKey:
    """Holds the key so no repr, str, f-string or traceback local can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted Cal.com API key>"

    __str__ = __repr__


class CalcomUpstream:
    """Fetches slots and event types from Cal.com (or the sandbox, which speaks the same API).

    Create one per process and share it: it owns one pooled keep-alive
    ``httpx.AsyncClient`` unless one is passed in (a passed-in client is
    borrowed, never closed here). Not retrying is deliberate; see the module
    docstring.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        default_timeout: float = 10.0,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        max_body_bytes: int = 16 * 1024 * 1024,
        on_request: RequestObserver | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        if not default_timeout > 0:
            raise ValueError("default_timeout must be positive")
        # Userinfo in the base URL would be a secret too: keep it out of repr.
        self._display_url = str(url.copy_with(username=None, password=None)).rstrip("/")
        self._base_url = base_url.rstrip("/")
        self._api_key = _ApiKey(api_key) if api_key else None
        self._default_timeout = default_timeout
        self._max_body_bytes = max_body_bytes
        self._on_request = on_request
        self._tracer = tracer
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            http1=True,
            http2=False,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=30.0,
            ),
            timeout=httpx.Timeout(default_timeout),
            # A redirect would be a misconfigured base URL; following it could
            # spend rate budget on the wrong host.
            follow_redirects=False,
            headers={"accept": "application/json", "user-agent": "slot-availability/0.1"},
        )

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None else "unset"
        return f"CalcomUpstream(base_url={self._display_url!r}, api_key={key})"

    __str__ = __repr__

    async def aclose(self) -> None:
        """Close the connection pool if this adapter created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the port ---------------------------------------------------------------

    async def fetch_slots(
        self,
        event_type_id: int,
        first_day: date,
        last_day: date,
        *,
        duration_minutes: int = 0,
        timeout: float | None = None,
        priority: Priority = Priority.INTERACTIVE,
    ) -> Mapping[date, Sequence[Slot]]:
        """Slots starting on UTC days ``first_day`` .. ``last_day``, grouped by UTC start day.

        ``end`` is sent as a bare date on purpose: Cal.com stretches a
        date-only (or exact-midnight) end to 23:59:59 of that day, so sending
        midnight of the day after would fetch one day too many.
        ``format=range`` is requested so slot ends come from Cal.com rather
        than being guessed; the plain time format is parsed too because the
        sandbox and older deployments may send it.
        """
        if last_day < first_day:
            raise UpstreamRejected("last_day is before first_day")
        if duration_minutes < 0:
            raise UpstreamRejected("duration_minutes must not be negative")
        params: list[tuple[str, str]] = [
            ("eventTypeId", str(event_type_id)),
            ("start", first_day.isoformat()),
            ("end", last_day.isoformat()),
            ("timeZone", "UTC"),
            ("format", "range"),
        ]
        if duration_minutes > 0:
            params.append(("duration", str(duration_minutes)))
        return await self._get(
            "slots",
            "/v2/slots",
            params,
            SLOTS_API_VERSION,
            timeout,
            what=f"slots of event type {event_type_id}",
            event_type_id=event_type_id,
            parse=lambda body: _parse_slots(body, first_day, last_day, duration_minutes),
        )

    async def fetch_event_type(
        self,
        event_type_id: int,
        *,
        timeout: float | None = None,
    ) -> EventTypeInfo:
        """Hosts, read leniently: only the envelope must be right.

        Individual types name their owner in ``ownerId`` (and ``users``); team
        types list ``hosts[].userId``. Field sets vary across Cal.com versions,
        so unknown or missing host fields are skipped rather than fatal.
        """
        return await self._get(
            "event_type",
            f"/v2/event-types/{int(event_type_id)}",
            [],
            EVENT_TYPES_API_VERSION,
            timeout,
            what=f"event type {event_type_id}",
            event_type_id=event_type_id,
            parse=lambda body: _parse_event_type(body, event_type_id),
        )

    # -- HTTP -------------------------------------------------------------------

    async def _get(
        self,
        endpoint: str,
        path: str,
        params: Sequence[tuple[str, str]],
        api_version: str,
        deadline_s: float | None,
        *,
        what: str,
        event_type_id: int,
        parse: Callable[[Any], T],
    ) -> T:
        """One GET bounded as a whole by ``deadline_s``; returns ``parse(decoded JSON)``
        or raises. Parsing happens here so that a malformed body is the request's outcome.

        httpx's timeout applies per phase (connect, each read), so a body
        dripping in slower than the deadline but faster than the read timeout
        would overrun it; ``asyncio.timeout`` bounds the total.
        """
        budget = self._default_timeout if deadline_s is None else deadline_s
        if not budget > 0:  # also catches NaN
            raise UpstreamUnavailable("deadline already expired before calling Cal.com")
        if self._client.is_closed:
            raise UpstreamUnavailable("the Cal.com adapter is closed")
        headers = {"cal-api-version": api_version}
        if self._api_key is not None:
            headers["authorization"] = f"Bearer {self._api_key.reveal()}"
        span = (
            contextlib.nullcontext()
            if self._tracer is None
            else tracing.client_span(
                self._tracer,
                f"Cal.com GET {endpoint}",
                {
                    "http.request.method": "GET",
                    "url.path": path,
                    "availability.event_type_id": event_type_id,
                },
            )
        )
        outcome = "cancelled"  # until the request ends any other way
        status: int | None = None
        started = time.perf_counter()
        with span as current:
            try:
                try:
                    async with asyncio.timeout(budget):
                        async with self._client.stream(
                            "GET",
                            f"{self._base_url}{path}",
                            params=tuple(params),
                            headers=headers,
                            timeout=httpx.Timeout(budget),
                        ) as response:
                            status = response.status_code
                            response_headers = response.headers
                            raw = await self._read_body(response)
                except (TimeoutError, httpx.TimeoutException):
                    outcome = "timeout"
                    raise UpstreamUnavailable(
                        f"Cal.com did not answer within {budget:g} s"
                    ) from None
                except _Malformed as exc:
                    outcome = "malformed"
                    raise UpstreamUnavailable(f"Cal.com sent a malformed response: {exc}") from None
                except httpx.HTTPError as exc:
                    # str(exc) can carry the URL; the type name is enough to diagnose.
                    outcome = "connection"
                    raise UpstreamUnavailable(
                        f"could not reach Cal.com ({type(exc).__name__})"
                    ) from None
                if 200 <= status < 300:
                    try:
                        result = parse(_decode_json(raw))
                    except _Malformed as exc:
                        outcome = "malformed"
                        raise UpstreamUnavailable(
                            f"Cal.com sent a malformed {endpoint.replace('_', ' ')} response: {exc}"
                        ) from None
                    outcome = "ok"
                    return result
                outcome = _status_outcome(status)
                raise self._status_error(status, response_headers, raw, what, event_type_id)
            finally:
                self._finished(endpoint, path, outcome, status, started, event_type_id, current)

    async def _read_body(self, response: httpx.Response) -> bytes:
        """Read at most ``max_body_bytes``: a runaway body must not exhaust memory."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _Malformed(f"body larger than {self._max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _status_error(
        self, status: int, headers: httpx.Headers, raw: bytes, what: str, event_type_id: int
    ) -> UpstreamUnavailable | UpstreamRejected | EventTypeNotFound | UpstreamAuthError:
        if status == 400:
            detail = self._error_message(raw)
            suffix = f": {detail}" if detail else ""
            return UpstreamRejected(f"Cal.com rejected the request for {what}{suffix}")
        if status == 404:
            return EventTypeNotFound(f"Cal.com does not know event type {event_type_id}")
        if status in (401, 403):
            if self._api_key is None:
                return UpstreamAuthError(
                    f"Cal.com requires an API key (HTTP {status}) and none is configured"
                )
            return UpstreamAuthError(f"Cal.com rejected the configured API key (HTTP {status})")
        if status == 429:
            # This response's header only: an older reset would understate the wait.
            reset = _header_number(headers, "reset")
            if reset is not None:
                return UpstreamThrottled(
                    f"Cal.com rate limit reached; resets in {reset:g} s", reset
                )
            return UpstreamThrottled("Cal.com rate limit reached")
        if 500 <= status < 600:
            return UpstreamUnavailable(f"Cal.com failed with HTTP {status}")
        return UpstreamUnavailable(f"unexpected HTTP {status} from Cal.com")

    def _error_message(self, raw: bytes) -> str:
        """Cal.com's ``error.message`` (string or NestJS list), shortened and scrubbed."""
        try:
            body = _decode_json(raw)
        except _Malformed:
            return ""
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, list):
            message = "; ".join(str(part) for part in message)
        if not isinstance(message, str):
            return ""
        return self._scrub(" ".join(message.split()))[:_MAX_MESSAGE_CHARS]

    def _scrub(self, text: str) -> str:
        """Upstream text is untrusted: make sure it cannot echo our key back."""
        if self._api_key is not None:
            text = text.replace(self._api_key.reveal(), "[redacted]")
        return text

    def _finished(
        self,
        endpoint: str,
        path: str,
        outcome: str,
        status: int | None,
        started: float,
        event_type_id: int,
        span: Any,
    ) -> None:
        seconds = time.perf_counter() - started
        if self._on_request is not None:
            self._on_request(endpoint, outcome, seconds)
        if span is not None:
            span.set_attribute("availability.outcome", outcome)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if outcome != "ok":
                tracing.failed(span, outcome)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Cal.com GET %s -> %s in %.1f ms",
                path,
                outcome if status is None else status,
                seconds * 1000,
                extra=log_fields(
                    endpoint=endpoint,
                    outcome=outcome,
                    http_status=status,
                    duration_ms=round(seconds * 1000, 1),
                    event_type_id=event_type_id,
                ),
            )


def _status_outcome(status: int) -> str:
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "rejected"
    if 500 <= status < 600:
        return "server_error"
    return "malformed"  # 1xx/3xx: a redirect we do not follow, or nonsense


# -- parsing (pure functions, raise _Malformed) ----------------------------------


def _header_number(headers: httpx.Headers, name: str) -> float | None:
    """``X-RateLimit-<Name>-Default`` (Cal.com's default throttler), else the bare name."""
    value = headers.get(f"x-ratelimit-{name}-default") or headers.get(f"x-ratelimit-{name}")
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise _Malformed("body is not JSON") from None
    except RecursionError:
        raise _Malformed("body nests too deeply") from None


def _success_data(body: Any) -> Any:
    if not isinstance(body, dict):
        raise _Malformed("body is not a JSON object")
    if body.get("status") != "success":
        raise _Malformed("status is not 'success'")
    if "data" not in body:
        raise _Malformed("no 'data'")
    return body["data"]


def _parse_slots(
    body: Any, first_day: date, last_day: date, duration_minutes: int
) -> dict[date, tuple[Slot, ...]]:
    """Regroup by UTC start day even though we ask for UTC: keys are advisory only."""
    data = _success_data(body)
    if not isinstance(data, dict):
        raise _Malformed("'data' is not an object")
    by_day: dict[date, list[Slot]] = {}
    for items in data.values():
        if not isinstance(items, list):
            raise _Malformed("a day's slots are not a list")
        for item in items:
            slot = _parse_slot(item, duration_minutes)
            day = datetime.fromtimestamp(slot.start, UTC).date()
            if first_day <= day <= last_day:
                by_day.setdefault(day, []).append(slot)
    return {day: tuple(sorted(by_day[day])) for day in sorted(by_day)}


def _parse_slot(item: Any, duration_minutes: int) -> Slot:
    if isinstance(item, str):  # the spec's schema for format=time: bare strings
        item = {"start": item}
    if not isinstance(item, dict):
        raise _Malformed("a slot is neither an object nor a string")
    start = _epoch_seconds(item.get("start"))
    if item.get("end") is not None:
        end: int | None = _epoch_seconds(item["end"])
    elif duration_minutes > 0:
        end = start + duration_minutes * 60
    else:
        end = None
    if end is not None and end < start:
        raise _Malformed("a slot ends before it starts")
    seats = None
    if any(item.get(name) is not None for name in (*_SEAT_FIELDS, "attendeesCount")):
        booked = _optional_int(item.get("seatsBooked"))
        if booked is None:  # older Cal.com name for the same count
            booked = _optional_int(item.get("attendeesCount"))
        booking_uid = item.get("bookingUid")
        if booking_uid is not None and not isinstance(booking_uid, str):
            raise _Malformed("bookingUid is not a string")
        seats = Seats(
            total=_optional_int(item.get("seatsTotal")),
            booked=booked,
            remaining=_optional_int(item.get("seatsRemaining")),
            booking_uid=booking_uid,
        )
    return Slot(start, end, seats)


def _epoch_seconds(value: Any) -> int:
    """ISO 8601 with ``Z`` or an offset, milliseconds allowed; naive times are ambiguous."""
    if not isinstance(value, str):
        raise _Malformed("a slot time is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Malformed("a slot time is not ISO 8601") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _Malformed("a slot time has no UTC offset")
    return (moment - _EPOCH) // timedelta(seconds=1)


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed("a seat count is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise _Malformed("a seat count is not whole")
    return int(value)


def _parse_event_type(body: Any, event_type_id: int) -> EventTypeInfo:
    data = _success_data(body)
    if not isinstance(data, dict):
        raise _Malformed("'data' is not an object")
    host_ids: set[int] = set()
    owner = _lenient_id(data.get("ownerId"))
    if owner is not None:
        host_ids.add(owner)
    for field_name in ("hosts", "users"):
        entries = data.get(field_name)
        if isinstance(entries, list):
            for entry in entries:
                host_id = _entry_id(entry)
                if host_id is not None:
                    host_ids.add(host_id)
    return EventTypeInfo(event_type_id=event_type_id, host_ids=frozenset(host_ids))


def _entry_id(entry: Any) -> int | None:
    """A host/user entry: an id, a numeric string, or an object with ``userId`` / ``id``."""
    if isinstance(entry, dict):
        user_id = _lenient_id(entry.get("userId"))
        return user_id if user_id is not None else _lenient_id(entry.get("id"))
    return _lenient_id(entry)


def _lenient_id(value: Any) -> int | None:
    """A positive whole number from an int, integral float or digit string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, int) and value > 0:
        return value
    return None
