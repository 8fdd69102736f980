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
from collections import OrderedDict
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from availability.adapters.calcom.webhooks import (
    SIGNATURE_HEADER,
    BadDelivery,
    Delivery,
    parse_delivery,
    signature,
)
from availability.core.cache import Invalidation, InvalidationScope
from availability.core.ports import UpstreamError, UpstreamUnavailable
from availability.transport.caller_text import quote_caller_text

__all__ = ["CalcomWebhooks", "Invalidator"]

logger = logging.getLogger(__name__)

_MAX_TRIGGER_CHARS = 64
"""Cal.com's longest trigger name has 30 characters."""
_MAX_UID_CHARS = 100


class Invalidator(Protocol):
    async def invalidate(
        self, scope: InvalidationScope, *, timeout: float | None = None
    ) -> Invalidation: ...


class CalcomWebhooks:
    """The ``POST /webhooks/calcom`` endpoint."""

    def __init__(
        self,
        invalidator: Invalidator,
        *,
        secret: str | None,
        max_body: int,
        timeout: float,
        remember: int = 10_000,
    ) -> None:
        self._invalidator = invalidator
        self._secret = None if not secret else secret.encode()
        self._max_body = max_body
        self._timeout = timeout
        self._remember = remember
        self._applied: OrderedDict[bytes, None] = OrderedDict()

    async def endpoint(self, request: Request) -> Response:
        if self._secret is None:
            return _error(503, "no webhook secret is configured (AVAILABILITY_WEBHOOK_SECRET)")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            return self._too_large()
        given = request.headers.get(SIGNATURE_HEADER)
        if given is None:
            return _error(401, f"missing {SIGNATURE_HEADER} header")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        expected = signature(self._secret, body).encode()
        # Headers arrive as latin-1 text; compare bytes so any header value is comparable.
        if not hmac.compare_digest(expected, given.strip().encode("latin-1", "replace")):
            logger.warning("webhook refused: bad signature from %s", _peer(request))
            return _error(401, "signature does not match the body")
        try:
            delivery = parse_delivery(body)
        except BadDelivery as exc:
            logger.warning("webhook refused: %s", exc)
            return _error(400, str(exc))
        if not delivery.scopes:
            logger.info("webhook %s ignored: it changes no availability", _trigger(delivery))
            return JSONResponse({"result": "ignored"})
        identity = hashlib.sha256(body).digest()
        if identity in self._applied:
            self._applied.move_to_end(identity)
            return JSONResponse({"result": "duplicate"})
        return await self._apply(delivery, identity)

    async def _apply(self, delivery: Delivery, identity: bytes) -> Response:
        event_types: set[int] = set()
        hosts: set[int] = set()
        try:
            for scope in delivery.scopes:
                done = await self._invalidator.invalidate(scope, timeout=self._timeout)
                event_types.update(done.event_type_ids)
                hosts.update(done.host_ids)
        except UpstreamUnavailable as exc:
            logger.warning(
                "webhook %s incomplete, Cal.com asked to retry: %s", _trigger(delivery), exc
            )
            return _error(503, "could not learn the event type's hosts from Cal.com; retry")
        except UpstreamError as exc:
            # Cal.com rejected the host look-up: its own scope was invalidated, retrying won't help.
            logger.warning("webhook %s: host look-up refused: %s", _trigger(delivery), exc)
        self._applied[identity] = None
        if len(self._applied) > self._remember:
            self._applied.popitem(last=False)
        logger.info(
            "webhook %s (booking %s): invalidated event types %s / hosts %s",
            _trigger(delivery),
            "-"
            if delivery.booking_uid is None
            else quote_caller_text(delivery.booking_uid, limit=_MAX_UID_CHARS),
            sorted(event_types),
            sorted(hosts),
        )
        return JSONResponse(
            {
                "result": "invalidated",
                "trigger": delivery.trigger,
                "event_type_ids": sorted(event_types),
                "host_ids": sorted(hosts),
            }
        )

    async def _body(self, request: Request) -> bytes | Response:
        """The raw body, or the refusal to read more of it.

        Counted while streaming: a chunked body (no Content-Length) or one
        longer than it claimed stops at the limit too.
        """
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self._max_body:
                    return self._too_large()
        except ClientDisconnect:
            return _error(400, "the body ended early")
        return bytes(body)

    def _too_large(self) -> Response:
        return _error(413, f"the body exceeds {self._max_body} bytes")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _trigger(delivery: Delivery) -> str:
    return quote_caller_text(delivery.trigger, limit=_MAX_TRIGGER_CHARS)


def _peer(request: Request) -> str:
    return request.client.host if request.client is not None else "?"
