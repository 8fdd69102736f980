"""Who may call what: bearer tokens with a role (checked by the auth interceptor).

``InvalidateSlots`` is a denial-of-service lever: whoever can call it can wipe
the cache and make every reader spend the shared Cal.com budget. So callers
present ``authorization: Bearer <token>``; a ``reader`` token may call
``GetSlots``, a ``writer`` token (the booking service) may also invalidate.
Health and reflection stay open: load balancers and grpcurl need them and
they reveal nothing a client stub does not.

A method of the service that the table below does not name needs a writer:
a new RPC is closed until someone decides otherwise. Tokens are compared in
constant time (as SHA-256 digests, so their length does not leak either) and
never appear in a log or an error message.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from availability.transport.grpc.servicer import SERVICE_NAME

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


_REQUIRED: Mapping[str, Role] = {f"/{SERVICE_NAME}/GetSlots": Role.READER}
"""Methods open to a role below writer; everything else not open needs a writer."""


def required_role(method: str) -> Role | None:
    """The role a full method name (``/package.Service/Method``) needs; None: open to all."""
    if method.startswith(_OPEN_PREFIXES):
        return None
    return _REQUIRED.get(method, Role.WRITER)


@dataclass(frozen=True, slots=True)
class ApiTokens:
    """The configured tokens, kept only as digests."""

    _digests: tuple[tuple[bytes, Role], ...]

    def __len__(self) -> int:
        return len(self._digests)

    def role(self, token: str) -> Role | None:
        """The token's role, or None; takes the same time whichever token matches."""
        digest = _digest(token)
        found: Role | None = None
        for known, role in self._digests:
            if hmac.compare_digest(known, digest):
                found = role
        return found


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
    return ApiTokens(tuple(roles.items()))


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
