"""Who may call what: bearer tokens with a role (checked by the servicer).

``InvalidateSlots`` is a denial-of-service lever: whoever can call it can wipe
the cache and make every reader spend the shared Cal.com budget. So callers
present ``authorization: Bearer <token>``; a ``reader`` token may call
``GetSlots``, a ``writer`` token (the booking service) may also invalidate.
Health and reflection stay open: load balancers and grpcurl need them and
they reveal nothing a client stub does not.

A method of the service that the table below does not name needs a writer:
a new RPC is closed until someone decides otherwise. Tokens are kept as
their SHA-256 digests (one dict lookup: see :meth:`ApiTokens.role` for why
that is safe) and never appear in a log or an error message; header values
that proved good are remembered as they came, so a repeat skips the parse
and the digest (bounded, and safe: see :meth:`ApiTokens.caller_role`). They are
checked where a call's handler is chosen (GetSlots, on the metadata grpc.aio
has already read) or first thing in the handler, before a request's bytes are
parsed: no interceptor, which grpc.aio would run on every call.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from availability.v1 import availability_pb2 as pb

__all__ = ["ApiTokens", "Role", "load_api_tokens", "required_role"]

_OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    READER = 1
    WRITER = 2


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AvailabilityService"].full_name

_REQUIRED: Mapping[str, Role] = {f"/{SERVICE_NAME}/GetSlots": Role.READER}
"""Methods open to a role below writer; everything else not open needs a writer."""


def required_role(method: str) -> Role | None:
    """The role a full method name (``/package.Service/Method``) needs; None: open to all."""
    if method.startswith(_OPEN_PREFIXES):
        return None
    return _REQUIRED.get(method, Role.WRITER)


@dataclass(frozen=True, slots=True)
class ApiTokens:
    """The configured tokens, kept only as their SHA-256 digests."""

    _roles: Mapping[bytes, Role]
    _accepted: dict[str, Role] = field(default_factory=dict, compare=False)
    """Header values already found good, by value: a repeat costs one dict lookup
    instead of a parse and a digest (see :meth:`caller_role` for why that is safe)."""

    def __len__(self) -> int:
        return len(self._roles)

    def role(self, token: str) -> Role | None:
        """The token's role, or None.

        One dict lookup on the token's digest. Timing can at most tell how a
        digest the caller cannot choose compares with the keys (hash buckets,
        byte comparisons of digests), which is no help in finding a token:
        a preimage of a chosen digest is what it would take.
        """
        return self._roles.get(_digest(token))

    def refusal(
        self, metadata: Iterable[tuple[str, str | bytes]] | None, method: str
    ) -> tuple[grpc.StatusCode, str] | None:
        """Why a call of full ``method`` name with ``metadata`` may not proceed; None: it may."""
        required = required_role(method)
        if required is None:
            return None
        role = self.caller_role(metadata)
        if role is None:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API token: send 'authorization: Bearer <token>'",
            )
        if role < required:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token's role ({role.name.lower()}) may not call {method.rsplit('/', 1)[-1]}",
            )
        return None

    def admits(self, metadata: Iterable[tuple[str, str | bytes]] | None, required: Role) -> bool:
        """Whether the caller of ``metadata`` has at least the ``required`` role (for a
        method whose role is known beforehand: :meth:`refusal` says why not)."""
        role = self.caller_role(metadata)
        return role is not None and role >= required

    def caller_role(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Role | None:
        """The role of the token in ``metadata``'s authorization header, or None."""
        value = _authorization(metadata)
        if value is None:
            return None
        role = self._accepted.get(value)
        if role is None:
            token = _bearer_token(value)
            role = None if token is None else self.role(token)
            # Only values that were good are kept (at most a few spellings per token, so
            # the table stays bounded by what is configured): a wrong value never enters.
            # A lookup of a wrong value compares it with a kept one only when their
            # str hashes, keyed per process by Python's SipHash, collide: no timing
            # tells how close a guess is.
            if role is not None and len(self._accepted) < _SPELLINGS * len(self._roles):
                self._accepted[value] = role
        return role


_BEARER = "bearer "


_SPELLINGS = 4
"""Header values kept per configured token (``Bearer x``, ``bearer x``, ...)."""


def _authorization(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


def _bearer_token(value: str) -> str | None:
    if value[: len(_BEARER)].lower() == _BEARER:
        return value[len(_BEARER) :].strip()
    return None


def load_api_tokens(tokens: str | None, tokens_file: Path | None) -> ApiTokens:
    """The comma-separated ``tokens`` and the file's lines, together.

    Raises ValueError when the file cannot be read or an entry is malformed.
    """
    roles: dict[bytes, Role] = {}
    if tokens:
        _parse(tokens.split(","), "api_tokens", roles)
    if tokens_file is not None:
        try:
            text = tokens_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ValueError(f"cannot read {str(tokens_file)!r}: {reason}") from None
        _parse(text.splitlines(), "api_tokens_file", roles)
    return ApiTokens(roles)


def _parse(entries: Iterable[str], source: str, roles: dict[bytes, Role]) -> dict[bytes, Role]:
    for number, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        token, sep, role_name = entry.rpartition(":")
        token, role_name = token.strip(), role_name.strip()
        where = f"{source} entry {number}"
        if not sep or not token:
            raise ValueError(f"{where}: expected token:role")
        try:
            role = Role[role_name.upper()]
        except KeyError:
            raise ValueError(
                f"{where}: unknown role {role_name[:20]!r}; expected reader or writer"
            ) from None
        if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
            raise ValueError(f"{where}: a token must be printable ASCII without spaces")
        digest = _digest(token)
        if roles.setdefault(digest, role) is not role:
            raise ValueError(f"{where}: this token already has another role")
    return roles


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
