"""Cal.com webhook deliveries: their signature, and the invalidations they ask for.

What a delivery means is Cal.com's business, so it lives with the Cal.com
adapter; the HTTP endpoint (:mod:`availability.transport.http.webhooks`)
receives, checks and applies it in this order:

1. No secret configured: 503 for every delivery. An unsigned delivery is
   never trusted, and a loud failure in Cal.com's delivery log beats a 404
   that looks like a wrong URL.
2. A body over ``max_body`` bytes: 413, decided from ``Content-Length`` or
   while streaming, never by reading the whole body.
3. ``X-Cal-Signature-256`` must be the lowercase hex HMAC-SHA256 of the raw
   body under the secret, compared in constant time: otherwise 401, and
   nothing is parsed, let alone invalidated.
4. Only then is the JSON read. A trigger that changes availability needs its
   window and its event type or organizer (else 400); any other trigger
   (``PING``, ``MEETING_ENDED``, ...) is acknowledged and ignored.

Cal.com retries, duplicates and reorders deliveries, so what a delivery asks
for is idempotent: a set of invalidation scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from availability.core.cache import InvalidationScope
from availability.core.local_days import DAY

__all__ = [
    "AVAILABILITY_TRIGGERS",
    "SIGNATURE_HEADER",
    "BadDelivery",
    "Delivery",
    "parse_delivery",
    "signature",
]

AVAILABILITY_TRIGGERS = frozenset(
    {
        "BOOKING_CREATED",
        "BOOKING_REQUESTED",  # a pending booking blocks its time too
        "BOOKING_RESCHEDULED",
        "BOOKING_CANCELLED",
        "BOOKING_REJECTED",
    }
)
SIGNATURE_HEADER = "x-cal-signature-256"

_MAX_ID = 2**63 - 1  # the contract's int64
_MAX_TEAM_HOSTS = 1000
"""Beyond this, member ids are dropped: the event type's own hosts (looked up) still count."""
_MAX_WINDOW = 366 * DAY
"""A wider window is treated as "every day": cheaper to state than to enumerate."""
_MAX_TIME_CHARS = 64


class BadDelivery(ValueError):
    """A signed delivery this receiver cannot act on; the message names the field."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")


@dataclass(frozen=True, slots=True)
class Delivery:
    trigger: str
    scopes: tuple[InvalidationScope, ...]
    """What the booking changed; empty for triggers that change no availability."""
    booking_uid: str | None = None


def signature(secret: bytes, body: bytes) -> str:
    """``X-Cal-Signature-256`` as Cal.com computes it: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_delivery(body: bytes) -> Delivery:
    """The delivery's trigger and invalidation scopes; raises :class:`BadDelivery`."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        raise BadDelivery("body", "is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadDelivery("body", "must be a JSON object")
    trigger = document.get("triggerEvent")
    if not isinstance(trigger, str) or not trigger:
        raise BadDelivery("triggerEvent", "must be a non-empty string")
    if trigger not in AVAILABILITY_TRIGGERS:
        return Delivery(trigger, ())
    payload = document.get("payload")
    if not isinstance(payload, dict):
        raise BadDelivery("payload", "must be an object")
    event_type_id = _id(payload.get("eventTypeId"), "payload.eventTypeId")
    hosts = _hosts(payload)
    if event_type_id is None and not hosts:
        raise BadDelivery("payload.eventTypeId", "is required (or payload.organizer.id)")
    window = _window(payload, "startTime", "endTime")
    if window is None:
        raise BadDelivery("payload.startTime", "is required")
    scopes = [_scope(event_type_id, hosts, window)]
    if trigger == "BOOKING_RESCHEDULED":
        # Cal.com sends no BOOKING_CANCELLED for the old booking: free its time here.
        # Without the old window (older Cal.com) its slot frees up when its TTL ends.
        old = _window(payload, "rescheduleStartTime", "rescheduleEndTime")
        if old is not None:
            scopes.append(_scope(event_type_id, hosts, old))
    uid = payload.get("uid")
    return Delivery(trigger, tuple(scopes), uid if isinstance(uid, str) else None)


def _id(value: object, field: str) -> int | None:
    """A positive Cal.com id, or None when absent (JSON null counts as absent)."""
    if value is None:
        return None
    # bool is an int in Python, and 7.0 is not an id.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _MAX_ID:
        raise BadDelivery(field, "must be a positive integer id")
    return value


def _object(value: object, field: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadDelivery(field, "must be an object")
    return value


def _hosts(payload: Mapping[str, Any]) -> tuple[int, ...]:
    """The organizer's and the team members' user ids: whose calendars the booking blocks."""
    hosts: set[int] = set()
    organizer = _object(payload.get("organizer"), "payload.organizer")
    if organizer is not None:
        organizer_id = _id(organizer.get("id"), "payload.organizer.id")
        if organizer_id is not None:
            hosts.add(organizer_id)
    team = _object(payload.get("team"), "payload.team")
    members = None if team is None else team.get("members")
    if members is None:
        return tuple(sorted(hosts))
    if not isinstance(members, list):
        raise BadDelivery("payload.team.members", "must be a list")
    for i, raw in enumerate(members[:_MAX_TEAM_HOSTS]):
        member = _object(raw, f"payload.team.members[{i}]")
        if member is not None:
            # Cal.com's TeamMember.id is optional; a member without one adds nothing.
            member_id = _id(member.get("id"), f"payload.team.members[{i}].id")
            if member_id is not None:
                hosts.add(member_id)
    return tuple(sorted(hosts))


def _window(
    payload: Mapping[str, Any], start_field: str, end_field: str
) -> tuple[float, float] | None:
    """``[start, end)`` in epoch seconds; None when both are absent, BadDelivery when one is."""
    raw_start, raw_end = payload.get(start_field), payload.get(end_field)
    if raw_start is None and raw_end is None:
        return None
    start = _instant(raw_start, f"payload.{start_field}")
    end = _instant(raw_end, f"payload.{end_field}")
    if end <= start:
        raise BadDelivery(f"payload.{end_field}", f"must be after payload.{start_field}")
    return start, end


def _instant(value: object, field: str) -> float:
    if value is None:
        raise BadDelivery(field, "is required")
    if not isinstance(value, str) or len(value) > _MAX_TIME_CHARS:
        raise BadDelivery(field, "must be an ISO 8601 time with a UTC offset")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("no offset")
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise BadDelivery(field, "must be an ISO 8601 time with a UTC offset") from None


def _scope(
    event_type_id: int | None, hosts: tuple[int, ...], window: tuple[float, float]
) -> InvalidationScope:
    start, end = window
    if end - start > _MAX_WINDOW:
        return InvalidationScope(event_type_id=event_type_id, host_ids=hosts)
    return InvalidationScope(event_type_id=event_type_id, host_ids=hosts, start=start, end=end)
