"""Cal.com's contract as data kept in the repository (``tests/fixtures/calcom/``).

The files hold facts from Cal.com's published API v2 OpenAPI document and
webhook examples (names, types, values; descriptive prose left out): the
``GET /v2/slots`` operation, the ``GET /v2/event-types/{id}`` operation with
the component schemas it and the booking output reach, the example
deliveries of the three booking triggers, and the signature test vector
(secret, raw body, ``X-Cal-Signature-256``). Tests read them from here only.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "FIXTURES",
    "SignatureVector",
    "event_types_spec",
    "signature_vector",
    "slots_spec",
    "webhook_example",
]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "calcom"
SLOTS_SPEC = FIXTURES / "openapi-slots.json"
EVENT_TYPES_SPEC = FIXTURES / "openapi-event-types.json"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _slots_spec() -> dict[str, Any]:
    data: dict[str, Any] = _load(SLOTS_SPEC)
    return data


def slots_spec() -> dict[str, Any]:
    """OpenAPI 3.0 document of ``GET /v2/slots`` (a fresh copy: callers may edit it)."""
    copied: dict[str, Any] = json.loads(json.dumps(_slots_spec()))
    return copied


@cache
def event_types_spec() -> dict[str, Any]:
    """OpenAPI 3.0 document of ``GET /v2/event-types/{eventTypeId}`` and the schemas it needs."""
    data: dict[str, Any] = _load(EVENT_TYPES_SPEC)
    return data


def webhook_example(trigger: str) -> dict[str, Any]:
    """Cal.com's example delivery for ``trigger`` (a fresh copy)."""
    data: dict[str, Any] = _load(FIXTURES / f"webhook-{trigger}.json")
    return data


class SignatureVector:
    """A raw body, a secret and the ``X-Cal-Signature-256`` Cal.com sends for them."""

    def __init__(self, secret: str, signature: str, raw_body: str) -> None:
        self.secret = secret
        self.signature = signature
        self.raw_body = raw_body


@cache
def signature_vector() -> SignatureVector:
    data = _load(FIXTURES / "webhook-signature-vector.json")
    return SignatureVector(data["secret"], data["signature"], data["raw_body"])
