"""Cal.com's HTTP API (the parts this service touches) over a :class:`SandboxCalendar`.

The service talks to this app through the very adapter it uses for the real
Cal.com, so the app reproduces the behaviour that adapter must cope with (see
``../shared/calcom/README.md`` beside the repository): the ``cal-api-version`` routing, the
end-of-range trap, Cal.com's error envelope, per-key throttling with its
headers, and a realistic latency. On top it offers what the real one cannot:
a request log (to prove cache hits make no upstream call), injected faults,
and holds that freeze a response in flight so races can be staged exactly.

Routes: ``GET /v2/slots``, ``GET /v2/event-types/{id}``, ``POST /v2/bookings``,
``POST /v2/bookings/{uid}/cancel`` and ``POST /v2/bookings/{uid}/reschedule``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from http import HTTPStatus
from types import TracebackType
from typing import Any, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from availability.core.clock import Clock
from availability.sandbox.calendar import (
    Booking,
    EventType,
    SandboxCalendar,
    SandboxError,
)

__all__ = [
    "BOOKINGS_API_VERSION",
    "EVENT_TYPES_API_VERSION",
    "SLOTS_API_VERSION",
    "SLOTS_QUERY_PARAMS",
    "Hold",
    "RecordedRequest",
    "RequestLog",
    "Sandbox",
]

SLOTS_API_VERSION = "2024-09-04"
EVENT_TYPES_API_VERSION = "2024-06-14"
BOOKINGS_API_VERSION = "2024-08-13"
SLOTS_QUERY_PARAMS = frozenset(
    {
        "eventTypeId",
        "eventTypeSlug",
        "username",
        "teamSlug",
        "organizationSlug",
        "usernames",
        "start",
        "end",
        "timeZone",
        "duration",
        "format",
        "bookingUidToReschedule",
    }
)
_WINDOW_SECONDS = 60
# NestJS answers an unknown method+path with 404 "Cannot POST /x", never 405.
_ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CODES = {429: "ThrottlerException"}
_THROTTLED = "ThrottlerException: Too Many Requests"
_GUEST = {"name": "Sandbox Guest", "email": "guest@sandbox.invalid", "timeZone": "UTC"}

Json = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the sandbox saw it. The API key itself is never kept."""

    method: str
    path: str
    query: Mapping[str, str]
    api_version: str | None
    authorized: bool
    """Whether an ``Authorization`` header was sent."""
    status: int
    at: float
    """Arrival time on the sandbox's clock."""


class RequestLog(Sequence[RecordedRequest]):
    """Every request, in arrival order; tests count upstream calls with it."""

    def __init__(self) -> None:
        self._entries: list[RecordedRequest] = []

    @overload
    def __getitem__(self, index: int) -> RecordedRequest: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RecordedRequest]: ...
    def __getitem__(self, index: int | slice) -> RecordedRequest | Sequence[RecordedRequest]:
        return self._entries[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self._entries)

    def append(self, entry: RecordedRequest) -> None:
        self._entries.append(entry)

    def clear(self) -> None:
        self._entries.clear()

    def calls(self, path: str | None = "/v2/slots", *, status: int | None = None) -> int:
        """How many requests hit ``path`` (None: any) and, if given, got ``status``."""
        return sum(
            1
            for r in self._entries
            if (path is None or r.path == path) and (status is None or r.status == status)
        )


class Hold:
    """Parks responses for a path until released, so a test can act mid-fetch.

    The parked response was already computed when the request arrived, like a
    real answer still on the wire: calendar changes made meanwhile are not in it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.arrivals = 0
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def arrived(self, count: int = 1) -> None:
        """Wait until ``count`` responses in total have been parked on this hold."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.arrivals >= count)

    def release(self) -> None:
        self._released.set()

    async def _park(self) -> None:
        async with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()
        await self._released.wait()

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(slots=True)
class _Fault:
    path: str
    status: int
    body: bytes | None
    remaining: int


@dataclass(slots=True)
class _Bucket:
    window_start: float
    hits: int = 0
    blocked_until: float = -math.inf


class Sandbox:
    """The app's state: calendar, config, request log and test hooks. ``.app`` is the ASGI app."""

    def __init__(
        self,
        calendar: SandboxCalendar,
        *,
        clock: Clock | None = None,
        latency: tuple[float, float] = (0.3, 0.8),
        rate_limit_per_minute: int | None = 120,
        api_key: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not 0 <= latency[0] <= latency[1]:
            raise ValueError(f"latency must be (low, high) with 0 <= low <= high: {latency}")
        self.calendar = calendar
        self.clock: Clock = calendar.clock if clock is None else clock
        self.latency = latency
        self.rate_limit_per_minute = rate_limit_per_minute
        self.requests = RequestLog()
        self._api_key = api_key
        self._rng = random.Random(seed)
        self._buckets: dict[str, _Bucket] = {}
        self._faults: list[_Fault] = []
        self._holds: list[Hold] = []
        self._attendees: dict[str, Mapping[str, str]] = {}
        self.app = Starlette(
            routes=[
                Route("/v2/slots", self._endpoint(self._get_slots), methods=["GET"]),
                Route(
                    "/v2/event-types/{event_type_id}",
                    self._endpoint(self._get_event_type, auth_required=True),
                    methods=["GET"],
                ),
                Route("/v2/bookings", self._endpoint(self._create_booking), methods=["POST"]),
                Route(
                    "/v2/bookings/{uid}/cancel",
                    self._endpoint(self._cancel_booking),
                    methods=["POST"],
                ),
                Route(
                    "/v2/bookings/{uid}/reschedule",
                    self._endpoint(self._reschedule_booking),
                    methods=["POST"],
                ),
                Route("/{rest:path}", self._endpoint(self._no_route), methods=_ALL_METHODS),
            ]
        )

    # -- test hooks --------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: bytes | str | Mapping[str, Any] | None = None,
        count: int = 1,
        *,
        path: str = "/v2/slots",
    ) -> None:
        """Answer the next ``count`` requests under ``path`` with ``status``.

        ``body`` None sends Cal.com's error envelope for the status; a str or
        bytes is sent verbatim as ``application/json`` (garbage included).
        """
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else body
        raw = raw.encode() if isinstance(raw, str) else raw
        self._faults.append(_Fault(path, status, raw, count))

    def clear_faults(self) -> None:
        """Forget the faults still queued by :meth:`fail_next` (an outage ends)."""
        self._faults.clear()

    def hold(self, *, path: str = "/v2/slots") -> Hold:
        """Park every response under ``path`` from now until the hold is released."""
        hold = Hold(path)
        self._holds = [h for h in self._holds if not h.released] + [hold]
        return hold

    def reset(self) -> None:
        """Forget requests, throttling state and faults; release all holds."""
        self.requests.clear()
        self._buckets.clear()
        self._faults.clear()
        self.release_holds()

    def release_holds(self) -> None:
        """Let every parked response go (also done on shutdown, which would otherwise wait)."""
        for hold in self._holds:
            hold.release()
        self._holds.clear()

    # -- request pipeline --------------------------------------------------

    def _endpoint(self, handler: Handler, *, auth_required: bool = False) -> Handler:
        async def endpoint(request: Request) -> Response:
            rate_headers: dict[str, str] = {}
            try:
                self._authenticate(request, required=auth_required)
                rate_headers = self._throttle(request)
                response = self._take_fault(request)
                if response is None:
                    response = await handler(request)
            except SandboxError as exc:
                status = 404 if isinstance(exc, LookupError) else 400
                response = self._error(request, status, str(exc))
            except _HttpError as exc:
                rate_headers = exc.headers or rate_headers
                response = self._error(request, exc.status, exc.message)
            response.headers.update(rate_headers)
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    query=dict(request.query_params),
                    api_version=request.headers.get("cal-api-version"),
                    authorized="authorization" in request.headers,
                    status=response.status_code,
                    at=self.clock(),
                )
            )
            low, high = self.latency
            if high > 0:
                await asyncio.sleep(self._rng.uniform(low, high))
            hold = next(
                (h for h in self._holds if not h.released and _under(request, h.path)), None
            )
            if hold is not None:
                await hold._park()
            return response

        return endpoint

    def _authenticate(self, request: Request, *, required: bool) -> None:
        """A configured key must match when sent; Cal.com lets slots go unauthenticated."""
        if self._api_key is None:
            return
        sent = request.headers.get("authorization")
        if sent is None and not required:
            return
        if sent != f"Bearer {self._api_key}":
            raise _HttpError(401, "Invalid or missing API key")

    def _throttle(self, request: Request) -> dict[str, str]:
        """Cal.com's throttler: fixed 60 s windows per key, then a 60 s block."""
        limit = self.rate_limit_per_minute
        if limit is None:
            return {}
        client = request.client.host if request.client else "unknown"
        key = request.headers.get("authorization") or f"anonymous:{client}"
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is not None and now < bucket.blocked_until:
            raise _HttpError(429, _THROTTLED, _rate_headers(limit, 0, bucket.blocked_until - now))
        if bucket is None or now >= bucket.window_start + _WINDOW_SECONDS:
            bucket = self._buckets[key] = _Bucket(now)
        bucket.hits += 1
        if bucket.hits > limit:
            bucket.blocked_until = now + _WINDOW_SECONDS
            raise _HttpError(429, _THROTTLED, _rate_headers(limit, 0, _WINDOW_SECONDS))
        return _rate_headers(
            limit, limit - bucket.hits, bucket.window_start + _WINDOW_SECONDS - now
        )

    def _take_fault(self, request: Request) -> Response | None:
        fault = next((f for f in self._faults if _under(request, f.path)), None)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.remove(fault)
        if fault.body is None:
            return self._error(request, fault.status, HTTPStatus(fault.status).phrase)
        return Response(fault.body, fault.status, media_type="application/json")

    def _error(self, request: Request, status: int, message: str) -> JSONResponse:
        phrase = HTTPStatus(status).phrase
        code = _CODES.get(status) or phrase.title().replace(" ", "").replace("-", "") + "Exception"
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        body = {
            "status": "error",
            "timestamp": _iso_utc(self.clock()),
            "path": path,
            "error": {
                "code": code,
                "message": message,
                "details": {"message": message, "error": phrase, "statusCode": status},
            },
        }
        return JSONResponse(body, status)

    # -- GET /v2/slots -----------------------------------------------------

    async def _get_slots(self, request: Request) -> Response:
        if request.headers.get("cal-api-version") != SLOTS_API_VERSION:
            # Older API versions have no such route.
            raise _HttpError(404, f"Cannot GET {request.url.path}")
        query = request.query_params
        unknown = sorted(set(query) - SLOTS_QUERY_PARAMS)
        if unknown:
            raise _HttpError(
                400, ", ".join(f"property {name} should not exist" for name in unknown)
            )
        start = _parse_bound(query.get("start"), "start")
        end = _parse_bound(query.get("end"), "end")
        zone_name = query.get("timeZone", "UTC")
        zone = _zone(zone_name)
        fmt = query.get("format", "time")
        if fmt not in ("time", "range"):
            raise _HttpError(400, "format must be one of the following values: time, range")
        duration = _int(query.get("duration", "0"), "duration")
        if "duration" in query and duration <= 0:
            raise _HttpError(400, "duration must be a positive number of minutes")
        event_type = self._resolve_event_type(query, duration)
        if start > end:
            raise _HttpError(
                400, 'Invalid time range given - check the "start" and "end" query parameters.'
            )
        slots = self.calendar.slots(
            event_type,
            start,
            end,
            duration_minutes=duration,
            reschedule_uid=query.get("bookingUidToReschedule"),
        )
        z_suffix = zone_name.lower() in ("utc", "gmt")
        data: dict[str, list[Json]] = {}
        for slot in slots:
            local = datetime.fromtimestamp(slot.start, zone)
            item: Json = {"start": _iso_local(local, z_suffix)}
            if fmt == "range" and slot.end is not None:
                item["end"] = _iso_local(datetime.fromtimestamp(slot.end, zone), z_suffix)
            if slot.seats is not None:
                item |= {
                    "seatsBooked": slot.seats.booked,
                    "seatsRemaining": slot.seats.remaining,
                    "seatsTotal": slot.seats.total,
                }
                if slot.seats.booking_uid is not None:
                    item["bookingUid"] = slot.seats.booking_uid
            data.setdefault(local.date().isoformat(), []).append(item)
        return JSONResponse({"status": "success", "data": data})

    def _resolve_event_type(self, query: Mapping[str, str], duration: int) -> EventType:
        """The four lookups of the 2024-09-04 API; ``usernames`` makes a dynamic event."""
        if "eventTypeId" in query:
            return self.calendar.event_type(_int(query["eventTypeId"], "eventTypeId"))
        slug = query.get("eventTypeSlug")
        if slug is not None:
            if "username" not in query and "teamSlug" not in query:
                raise _HttpError(400, "eventTypeSlug requires username or teamSlug")
            return self.calendar.event_type_by_slug(
                slug, username=query.get("username"), team_slug=query.get("teamSlug")
            )
        if "usernames" in query:
            names = [n for n in query["usernames"].split(",") if n]
            if len(names) < 2:
                raise _HttpError(400, "usernames must contain at least 2 usernames")
            host_ids = []
            for name in names:
                host = self.calendar.host_by_username(name)
                if host is None:
                    raise _HttpError(404, f"User with username={name} not found")
                host_ids.append(host.id)
            return EventType(0, "dynamic", "Dynamic", duration or 30, tuple(host_ids))
        raise _HttpError(
            400,
            "Provide eventTypeId, eventTypeSlug with username or teamSlug, or usernames",
        )

    # -- GET /v2/event-types/{id} --------------------------------------------

    async def _get_event_type(self, request: Request) -> Response:
        _require_version(request, EVENT_TYPES_API_VERSION)
        et = self.calendar.event_type(_int(request.path_params["event_type_id"], "eventTypeId"))
        hosts = [self.calendar.hosts[h] for h in et.host_ids]
        data: Json = {
            "id": et.id,
            "lengthInMinutes": et.length_minutes,
            "title": et.title,
            "slug": et.slug,
            "description": "",
            # Cal.com sends a Cal Video location, but the spec's oneOf for it is ambiguous.
            "locations": [],
            "bookingFields": [],
            "disableGuests": False,
            "minimumBookingNotice": et.minimum_notice_minutes,
            "beforeEventBuffer": 0,
            "afterEventBuffer": 0,
            "recurrence": None,
            "metadata": {},
            "price": 0,
            "currency": "usd",
            "lockTimeZoneToggleOnBookingPage": False,
            "forwardParamsSuccessRedirect": None,
            "successRedirectUrl": None,
            "isInstantEvent": False,
            "scheduleId": None,
            "hidden": False,
            "bookingRequiresAuthentication": False,
        }
        if et.length_options:
            data["lengthInMinutesOptions"] = list(et.length_options)
        if et.seats_per_slot is not None:
            data["seats"] = {
                "seatsPerTimeSlot": et.seats_per_slot,
                "showAttendeeInfo": False,
                "showAvailabilityCount": True,
            }
        if et.team_id is None:
            data |= {"ownerId": hosts[0].id, "users": [h.username for h in hosts]}
        else:
            team = self.calendar.teams[et.team_id]
            data |= {
                "ownerId": None,
                "teamId": team.id,
                "schedulingType": "collective",
                "hosts": [
                    {"userId": h.id, "name": h.display_name, "username": h.username} for h in hosts
                ],
                "team": {
                    "id": team.id,
                    "slug": team.slug,
                    "name": team.name,
                    "bannerUrl": "",
                    "logoUrl": "",
                    "weekStart": "Monday",
                    "brandColor": "#292929",
                    "darkBrandColor": "#fafafa",
                    "theme": "light",
                },
            }
        return JSONResponse({"status": "success", "data": data})

    # -- bookings (for demos) ------------------------------------------------

    async def _create_booking(self, request: Request) -> Response:
        _require_version(request, BOOKINGS_API_VERSION)
        body = await _json_body(request)
        attendee = body.get("attendee")
        if not isinstance(attendee, dict) or not {"name", "email"} <= attendee.keys():
            raise _HttpError(400, "attendee with name and email is required")
        if "eventTypeId" in body:
            et = self.calendar.event_type(_int(str(body["eventTypeId"]), "eventTypeId"))
        else:
            et = self._resolve_event_type({k: str(v) for k, v in body.items()}, 0)
        booking = self.calendar.book(
            et.id,
            _parse_instant(body.get("start"), "start"),
            duration_minutes=_int(str(body.get("lengthInMinutes", 0)), "lengthInMinutes"),
        )
        self._attendees[booking.uid] = {
            "name": str(attendee["name"]),
            "email": str(attendee["email"]),
            "timeZone": str(attendee.get("timeZone", "UTC")),
        }
        return JSONResponse({"status": "success", "data": self._booking_json(booking)}, 201)

    async def _cancel_booking(self, request: Request) -> Response:
        _require_version(request, BOOKINGS_API_VERSION)
        body = await _json_body(request, optional=True)
        booking = self.calendar.cancel(request.path_params["uid"])
        data = self._booking_json(booking)
        if "cancellationReason" in body:
            data["cancellationReason"] = str(body["cancellationReason"])
        return JSONResponse({"status": "success", "data": data})

    async def _reschedule_booking(self, request: Request) -> Response:
        _require_version(request, BOOKINGS_API_VERSION)
        body = await _json_body(request)
        old_uid = request.path_params["uid"]
        booking = self.calendar.reschedule(old_uid, _parse_instant(body.get("start"), "start"))
        if old_uid in self._attendees:
            self._attendees[booking.uid] = self._attendees[old_uid]
        return JSONResponse({"status": "success", "data": self._booking_json(booking)}, 201)

    def _booking_json(self, booking: Booking) -> Json:
        et = self.calendar.event_type(booking.event_type_id)
        attendee = self._attendees.get(booking.uid, _GUEST)
        data: Json = {
            "id": booking.id,
            "uid": booking.uid,
            "title": et.title,
            "description": "",
            "hosts": [
                {
                    "id": h.id,
                    "name": h.display_name,
                    "email": f"{h.username}@sandbox.invalid",
                    "username": h.username,
                    "timeZone": h.time_zone,
                }
                for h in (self.calendar.hosts[i] for i in booking.host_ids)
            ],
            "status": booking.status,
            "start": _iso_utc(booking.start),
            "end": _iso_utc(booking.end),
            "duration": (booking.end - booking.start) // 60,
            "eventTypeId": et.id,
            "eventType": {"id": et.id, "slug": et.slug},
            "location": "integrations:daily",
            "absentHost": False,
            "createdAt": _iso_utc(booking.created_at),
            "updatedAt": _iso_utc(booking.created_at),
            "attendees": [{**attendee, "absent": False}],
            "bookingFieldsResponses": {"name": attendee["name"], "email": attendee["email"]},
        }
        if booking.reschedule_uid is not None:
            data["rescheduledFromUid"] = booking.reschedule_uid
        return data

    async def _no_route(self, request: Request) -> Response:
        raise _HttpError(404, f"Cannot {request.method} {request.url.path}")


def _under(request: Request, path: str) -> bool:
    return request.url.path == path or request.url.path.startswith(path.rstrip("/") + "/")


def _rate_headers(limit: int, remaining: int, reset_in: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit-Default": str(limit),
        "X-RateLimit-Remaining-Default": str(max(remaining, 0)),
        "X-RateLimit-Reset-Default": str(max(math.ceil(reset_in), 0)),
    }


def _require_version(request: Request, version: str) -> None:
    if request.headers.get("cal-api-version") != version:
        # Cal.com would serve an older API shape here; the sandbox speaks only this one.
        raise _HttpError(400, f"the sandbox serves this route only with cal-api-version {version}")


async def _json_body(request: Request, *, optional: bool = False) -> Json:
    raw = await request.body()
    if not raw and optional:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _HttpError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _HttpError(400, "request body must be a JSON object")
    return body


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _HttpError(400, f"{name} must be an integer number") from None


def _parse_instant(raw: object, name: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC, as Cal.com reads it."""
    if not isinstance(raw, str) or not raw:
        raise _HttpError(400, f"{name} must be a valid ISO 8601 date string")
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(), UTC)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _HttpError(400, f"{name} must be a valid ISO 8601 date string") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _parse_bound(raw: str | None, name: str) -> int:
    """Epoch seconds of a range bound, with Cal.com's end-of-day adjustment of ``end``.

    An ``end`` at exactly 00:00:00 UTC (which a date-only ``end`` is) becomes
    23:59:59 of that same day, so it covers the whole day rather than none of it.
    """
    instant = _parse_instant(raw, name)
    if name == "end":
        if instant.time() == time():
            instant = instant.replace(hour=23, minute=59, second=59)
        return math.floor(instant.timestamp())
    return math.ceil(instant.timestamp())


def _zone(name: str) -> tzinfo:
    if name.lower() in ("utc", "gmt"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _HttpError(400, f"timeZone {name!r} is not a valid IANA time zone") from None


def _iso_local(moment: datetime, z_suffix: bool) -> str:
    """Luxon's ``toISO()``: milliseconds, and ``Z`` only for the fixed UTC zone."""
    text = moment.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if z_suffix else text


def _iso_utc(epoch: float) -> str:
    return _iso_local(datetime.fromtimestamp(epoch, UTC), True)
