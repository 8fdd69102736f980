"""Command line: ``availability serve``, and ``availability demo``.

Flags override ``AVAILABILITY_*`` environment variables, which override the
defaults. A configuration error prints one line and exits 2.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from availability.adapters.observability.logs import configure_logging
from availability.config import Settings
from availability.server import run

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)

_EXIT_CONFIG = 2


@app.callback()
def _root() -> None:
    """The slot availability service."""


@app.command()
def serve(
    grpc_addr: Annotated[
        str | None, typer.Option(help="host:port to listen on [env AVAILABILITY_GRPC_ADDR]")
    ] = None,
    calcom_url: Annotated[
        str | None,
        typer.Option(
            help="Cal.com API base URL; unset = built-in sandbox [AVAILABILITY_CALCOM_URL]"
        ),
    ] = None,
    calcom_api_key: Annotated[
        str | None,
        typer.Option(help="Cal.com API key; prefer the env var [AVAILABILITY_CALCOM_API_KEY]"),
    ] = None,
    cache_url: Annotated[
        str | None, typer.Option(help="cache store URL [AVAILABILITY_CACHE_URL]")
    ] = None,
    calcom_rate_limit: Annotated[
        int | None,
        typer.Option(help="Cal.com calls/minute for the cluster [AVAILABILITY_CALCOM_RATE_LIMIT]"),
    ] = None,
    ttl_empty: Annotated[
        float | None, typer.Option(help="TTL of a day with no slots, s [AVAILABILITY_TTL_EMPTY]")
    ] = None,
    ttl_near: Annotated[
        float | None, typer.Option(help="TTL of a day within 7 days, s [AVAILABILITY_TTL_NEAR]")
    ] = None,
    ttl_far: Annotated[
        float | None, typer.Option(help="TTL of a later day, s [AVAILABILITY_TTL_FAR]")
    ] = None,
    max_stale: Annotated[
        float | None,
        typer.Option(
            help="serve expired buckets while Cal.com is down, s [AVAILABILITY_MAX_STALE]"
        ),
    ] = None,
    max_range_days: Annotated[
        int | None, typer.Option(help="longest GetSlots range [AVAILABILITY_MAX_RANGE_DAYS]")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR [AVAILABILITY_LOG_LEVEL]")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="text, or json: one JSON object per line [AVAILABILITY_LOG_FORMAT]"),
    ] = None,
    http_addr: Annotated[
        str | None,
        typer.Option(help="host:port for the webhook and probes [AVAILABILITY_HTTP_ADDR]"),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(help="Cal.com webhook secret; prefer the env [AVAILABILITY_WEBHOOK_SECRET]"),
    ] = None,
    webhook_max_body: Annotated[
        int | None,
        typer.Option(help="largest webhook body, bytes [AVAILABILITY_WEBHOOK_MAX_BODY]"),
    ] = None,
    api_tokens: Annotated[
        str | None,
        typer.Option(help="token:role,...; prefer the env var or a file [AVAILABILITY_API_TOKENS]"),
    ] = None,
    api_tokens_file: Annotated[
        Path | None,
        typer.Option(help="file of token:role lines [AVAILABILITY_API_TOKENS_FILE]"),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="serve non-loopback addresses without API tokens [AVAILABILITY_INSECURE]",
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain for gRPC [AVAILABILITY_TLS_CERT]")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key for gRPC [AVAILABILITY_TLS_KEY]")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(help="PEM CA; require client certificates [AVAILABILITY_TLS_CLIENT_CA]"),
    ] = None,
    max_message_bytes: Annotated[
        int | None,
        typer.Option(help="largest gRPC request, bytes [AVAILABILITY_MAX_MESSAGE_BYTES]"),
    ] = None,
    max_concurrent_rpcs: Annotated[
        int | None,
        typer.Option(help="RPCs served at once [AVAILABILITY_MAX_CONCURRENT_RPCS]"),
    ] = None,
) -> None:
    """Serve GetSlots and InvalidateSlots over gRPC."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in {
            "grpc_addr": grpc_addr,
            "calcom_url": calcom_url,
            "calcom_api_key": calcom_api_key,
            "cache_url": cache_url,
            "calcom_rate_limit": calcom_rate_limit,
            "ttl_empty": ttl_empty,
            "ttl_near": ttl_near,
            "ttl_far": ttl_far,
            "max_stale": max_stale,
            "max_range_days": max_range_days,
            "log_level": log_level,
            "log_format": log_format,
            "http_addr": http_addr,
            "webhook_secret": webhook_secret,
            "webhook_max_body": webhook_max_body,
            "api_tokens": api_tokens,
            "api_tokens_file": api_tokens_file,
            "insecure": insecure or None,  # absent: the env var decides
            "tls_cert": tls_cert,
            "tls_key": tls_key,
            "tls_client_ca": tls_client_ca,
            "max_message_bytes": max_message_bytes,
            "max_concurrent_rpcs": max_concurrent_rpcs,
        }.items()
        if value is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "configuration"
        message = error["msg"].removeprefix("Value error, ")
        typer.echo(f"availability: invalid {field}: {message}", err=True)
        raise typer.Exit(_EXIT_CONFIG) from None
    configure_logging(settings.log_level, settings.log_format)
    raise typer.Exit(asyncio.run(run(settings)))


@app.command()
def demo(
    seconds: Annotated[
        float, typer.Option(min=5, help="how long the busy hour takes, in seconds")
    ] = 45,
    plot: Annotated[
        Path | None,
        typer.Option(help="write a PNG of latency and Cal.com calls over time (the demo extra)"),
    ] = None,
    callers: Annotated[int, typer.Option(min=1, max=32, help="agents calling at once")] = 4,
    seed: Annotated[int | None, typer.Option(help="make the run repeatable")] = None,
) -> None:
    """Play a compressed busy hour against the built-in sandbox and watch /metrics."""
    # Imported here: `serve` needs none of the demo (rich, the clients).
    from availability.demo import run_demo  # noqa: PLC0415
    from availability.demo.plot import INSTALL_HINT, matplotlib_missing  # noqa: PLC0415

    if plot is not None and matplotlib_missing():
        typer.echo(f"availability: --plot needs matplotlib: {INSTALL_HINT}", err=True)
        raise typer.Exit(_EXIT_CONFIG)
    configure_logging("ERROR", "text")
    outcome = run_demo(seconds, plot=plot, callers=callers, seed=seed)
    raise typer.Exit(0 if all(ok for _, ok in outcome.checks) else 1)


def main() -> None:
    app()
