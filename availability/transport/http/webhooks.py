"""``POST /webhooks/calcom``: Cal.com's signed deliveries become invalidations.

The endpoint faces the internet, so it is as cheap as possible to refuse
(the order is documented in :mod:`availability.adapters.calcom.webhooks`):
no secret configured 503, too large 413 unread, bad signature 401 and nothing
parsed, unusable 400. Cal.com retries, duplicates and reorders deliveries:
invalidation is idempotent, and a delivery already applied (same body bytes,
remembered in a bounded LRU) is acknowledged without touching the cache
again. A delivery whose event type's hosts cannot be learned because Cal.com
is unavailable gets 503, so Cal.com tries again; what could be invalidated
already was.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from availability.adapters.calcom.webhooks import (
    SIGNATURE_HEADER,
    BadDelivery,
    Delivery,
    parse_delivery,
    signature,
)
from availability.adapters.observability.logs import caller_text, log_fields
from availability.adapters.observability.metrics import ServiceMetrics
from availability.core.cache import Invalidation, InvalidationScope
from availability.core.ports import UpstreamError, UpstreamUnavailable

__all__ = ["OUTCOMES", "CalcomWebhooks", "Invalidator"]

logger = logging.getLogger(__name__)

OUTCOMES: Final = (
    "invalidated",  # applied (200)
    "ignored",  # a trigger that changes no availability (200)
    "duplicate",  # applied before: acknowledged, nothing done (200)
    "retry",  # Cal.com could not tell the hosts just then (503: Cal.com retries)
    "malformed",  # signed, but without a usable window or event type (400)
    "unsigned",  # no signature header (401)
    "bad_signature",  # the signature does not match the body (401)
    "too_large",  # over the body limit (413)
    "not_configured",  # no secret configured (503)
)
"""What a delivery came to: ``availability_webhook_deliveries_total{outcome}``."""

_REFUSED: Final = frozenset(
    {"retry", "malformed", "unsigned", "bad_signature", "too_large", "not_configured"}
)


class Invalidator(Protocol):
    async def invalidate(
        self, scope: InvalidationScope, *, timeout: float | None = None
    ) -> Invalidation: ...


class CalcomWebhooks:
    """The ``POST /webhooks/calcom`` endpoint.

    Every delivery ends in one of :data:`OUTCOMES`, is counted by it (when given
    ``metrics``) and gets one log line: INFO when applied or acknowledged,
    WARNING when refused.
    """

    def __init__(
        self,
        invalidator: Invalidator,
        *,
        secret: str | None,
        max_body: int,
        timeout: float,
        remember: int = 10_000,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._invalidator = invalidator
        self._secret = None if not secret else secret.encode()
        self._max_body = max_body
        self._timeout = timeout
        self._remember = remember
        self._applied: OrderedDict[bytes, None] = OrderedDict()
        self._metrics = metrics

    async def endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        result = await self._handle(request)
        if self._metrics is not None:
            self._metrics.webhook_delivery(result.outcome)
        level = logging.WARNING if result.outcome in _REFUSED else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "webhook %s",
                result.outcome,
                extra=log_fields(
                    outcome=result.outcome,
                    http_status=result.response.status_code,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    **result.fields,
                    peer=_peer(request),
                ),
            )
        return result.response

    async def _handle(self, request: Request) -> _Result:
        if self._secret is None:
            return _Result(
                "not_configured",
                _error(503, "no webhook secret is configured (AVAILABILITY_WEBHOOK_SECRET)"),
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            return _Result("too_large", self._too_large())
        given = request.headers.get(SIGNATURE_HEADER)
        if given is None:
            return _Result("unsigned", _error(401, f"missing {SIGNATURE_HEADER} header"))
        body = await self._body(request)
        if isinstance(body, _Result):
            return body
        expected = signature(self._secret, body).encode()
        # Headers arrive as latin-1 text; compare bytes so any header value is comparable.
        if not hmac.compare_digest(expected, given.strip().encode("latin-1", "replace")):
            return _Result("bad_signature", _error(401, "signature does not match the body"))
        try:
            delivery = parse_delivery(body)
        except BadDelivery as exc:
            return _Result("malformed", _error(400, str(exc)), {"error": caller_text(str(exc))})
        described = _describe(delivery)
        if not delivery.scopes:
            return _Result("ignored", JSONResponse({"result": "ignored"}), described)
        identity = hashlib.sha256(body).digest()
        if identity in self._applied:
            self._applied.move_to_end(identity)
            return _Result("duplicate", JSONResponse({"result": "duplicate"}), described)
        return await self._apply(delivery, identity, described)

    async def _apply(
        self, delivery: Delivery, identity: bytes, described: dict[str, Any]
    ) -> _Result:
        event_types: set[int] = set()
        hosts: set[int] = set()
        fields = dict(described)
        try:
            for scope in delivery.scopes:
                try:
                    done = await self._invalidator.invalidate(scope, timeout=self._timeout)
                except UpstreamError:
                    self._count_invalidation()  # its own scope was, only the hosts' were not
                    raise
                self._count_invalidation()
                event_types.update(done.event_type_ids)
                hosts.update(done.host_ids)
        except UpstreamUnavailable as exc:
            fields["error"] = caller_text(str(exc))
            return _Result(
                "retry",
                _error(503, "could not learn the event type's hosts from Cal.com; retry"),
                fields,
            )
        except UpstreamError as exc:
            # Cal.com rejected the host look-up: its own scope was invalidated, retrying won't help.
            fields["error"] = caller_text(str(exc))
        self._applied[identity] = None
        if len(self._applied) > self._remember:
            self._applied.popitem(last=False)
        fields.update(event_types=sorted(event_types), hosts=sorted(hosts))
        return _Result(
            "invalidated",
            JSONResponse(
                {
                    "result": "invalidated",
                    "trigger": delivery.trigger,
                    "event_type_ids": sorted(event_types),
                    "host_ids": sorted(hosts),
                }
            ),
            fields,
        )

    def _count_invalidation(self) -> None:
        if self._metrics is not None:
            self._metrics.invalidated("webhook")

    async def _body(self, request: Request) -> bytes | _Result:
        """The raw body, or the refusal to read more of it.

        Counted while streaming: a chunked body (no Content-Length) or one
        longer than it claimed stops at the limit too.
        """
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self._max_body:
                    return _Result("too_large", self._too_large())
        except ClientDisconnect:
            return _Result("malformed", _error(400, "the body ended early"))
        return bytes(body)

    def _too_large(self) -> Response:
        return _error(413, f"the body exceeds {self._max_body} bytes")


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str
    response: Response
    fields: dict[str, Any] = field(default_factory=dict)


def _describe(delivery: Delivery) -> dict[str, Any]:
    """The delivery as its log line shows it: Cal.com's strings, bounded."""
    return {
        "trigger": caller_text(delivery.trigger, 64),
        "booking_uid": None
        if delivery.booking_uid is None
        else caller_text(delivery.booking_uid, 64),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _peer(request: Request) -> str:
    return request.client.host if request.client is not None else "?"
