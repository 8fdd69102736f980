"""TLS for the gRPC port, and mutual TLS when a client CA is configured.

The files are checked when the configuration is read (with the standard
library's TLS, which parses them the way any peer would), so a wrong path, a
key that does not match its certificate or a CA file with no certificate is a
one-line configuration error at start-up, not a handshake failure at the
first call. Error messages name the file, never its contents.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TlsFiles", "server_credentials"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    """PEM certificate chain, leaf first."""
    key: Path
    """PEM private key of the leaf certificate."""
    client_ca: Path | None = None
    """PEM CA certificate(s); when set, every client must present a certificate they signed."""

    def check(self) -> None:
        """Raise ValueError (one line, naming the file) unless the files make a usable server."""
        for path in (self.cert, self.key, self.client_ca):
            if path is not None:
                _read(path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key, password=_no_password)
        except ssl.SSLError as exc:
            raise ValueError(
                f"{str(self.cert)!r} and {str(self.key)!r} are not a PEM certificate "
                f"and its private key ({exc.reason or 'unreadable'})"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as exc:
                raise ValueError(
                    f"{str(self.client_ca)!r} holds no PEM CA certificate "
                    f"({exc.reason or 'unreadable'})"
                ) from None


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; client certificates are required with a client CA."""
    client_ca = None if files.client_ca is None else _read(files.client_ca)
    return grpc.ssl_server_credentials(
        [(_read(files.key), _read(files.cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal; gRPC cannot use such a key anyway.
    raise ValueError("the private key is encrypted; gRPC needs an unencrypted PEM key")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or 'unreadable'}") from None
