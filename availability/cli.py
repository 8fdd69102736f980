"""Command line: ``availability serve``, ``lab``, ``demo`` and ``availability --version``.

``serve`` has one option per field of :class:`~availability.config.Settings`,
generated from the field: its name (``ttl_near`` -> ``--ttl-near``), its type,
its default, its docstring (the help) and its env var (``AVAILABILITY_TTL_NEAR``).
A field added to ``Settings`` gets its flag, its help and its env var with no
edit here. Flags override ``AVAILABILITY_*`` environment variables, which
override the defaults. A configuration error prints one line naming the
setting and exits 2.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import SecretStr, ValidationError

import availability
from availability.adapters.observability.logs import configure_logging
from availability.config import SettingDoc, Settings, setting_docs
from availability.lab.command import lab
from availability.server import run

__all__ = ["app", "main", "settings_command"]

_EXIT_CONFIG = 2

SettingsT = TypeVar("SettingsT", bound=Settings)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The slot availability service: one shared, race-safe cache in front of Cal.com.",
    pretty_exceptions_enable=False,
    # Plain help text: docstrings are not rich markup ("[env var: ...]" is no style tag).
    rich_markup_mode=None,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"availability {availability.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """The slot availability service."""


def settings_command(
    settings_cls: type[SettingsT], action: Callable[[SettingsT], int]
) -> Callable[..., None]:
    """A typer command with one option per field of ``settings_cls``: it builds the settings
    (flags over env vars over defaults) and exits with ``action(settings)``'s status.

    Why a generated signature: typer reads a command's options from its function's
    signature (:func:`inspect.signature`, which honours ``__signature__``), so the command
    is an ordinary function whose signature is built from ``settings_cls.model_fields``,
    one ``Annotated[..., typer.Option(...)]`` parameter per field. That is typer's public
    API; recent typer releases ship a private copy of click, so a hand-built click command
    cannot be added to a typer app.

    Every option is text (or an on/off switch for a bool) whose absence is ``None``: a flag
    not given leaves the env var or the default in force, and pydantic parses a flag's
    value exactly as it parses the env var, so a bad flag and a bad env var fail alike, in
    one line.
    """
    docs = setting_docs(settings_cls)

    def command(**flags: Any) -> None:
        given: dict[str, Any] = {
            doc.name: _value(doc, flags[doc.name]) for doc in docs if flags[doc.name] is not None
        }
        try:
            settings = settings_cls(**given)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "configuration"
            _exit_config(field, error["msg"].removeprefix("Value error, "))
        raise typer.Exit(action(settings))

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [_parameter(doc) for doc in docs]
    )
    return command


def _parameter(doc: SettingDoc) -> inspect.Parameter:
    option: Any
    if doc.kind is bool:
        switch = typer.Option(
            f"{doc.flag}/--no-{doc.flag[2:]}", help=_help(doc), show_default=False
        )
        option = Annotated[bool | None, switch]
    else:
        text = typer.Option(doc.flag, metavar=_metavar(doc), help=_help(doc), show_default=False)
        option = Annotated[str | None, text]
    return inspect.Parameter(
        doc.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option
    )


def _help(doc: SettingDoc) -> str:
    text = doc.doc.replace("``", "")
    if doc.secret:
        # Never a default or a value: only where to put it.
        return (
            f"{text} Secret: prefer the env var; a command line is visible to every user of "
            f"the machine. [env var: {doc.env_var}]"
        )
    default = "unset" if doc.default is None else doc.default or '""'
    return f"{text} [env var: {doc.env_var}; default: {default}]"


_METAVARS: dict[Any, str] = {
    str: "TEXT",
    SecretStr: "TEXT",
    int: "INTEGER",
    float: "FLOAT",
    Path: "PATH",
}


def _metavar(doc: SettingDoc) -> str:
    if doc.json:
        return "JSON"
    if typing.get_origin(doc.kind) is typing.Literal:
        return "[" + "|".join(str(choice) for choice in typing.get_args(doc.kind)) + "]"
    if isinstance(doc.kind, type) and issubclass(doc.kind, enum.Enum):
        return "[" + "|".join(str(member.value) for member in doc.kind) + "]"
    return _METAVARS.get(doc.kind, "VALUE")


def _value(doc: SettingDoc, given: str | bool) -> object:
    """A flag's value as pydantic-settings reads the env var: JSON for lists and mappings."""
    if not doc.json or isinstance(given, bool):
        return given
    try:
        return json.loads(given)
    except ValueError:
        _exit_config(doc.name, "expected JSON")


def _exit_config(field: str, message: str) -> NoReturn:
    typer.echo(f"availability: invalid {field}: {message}", err=True)
    raise typer.Exit(_EXIT_CONFIG)


def _serve(settings: Settings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=_loop_factory(settings)) as runner:
        return runner.run(run(settings))


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when the settings ask for it; None: asyncio's default."""
    if not settings.uvloop:
        return None
    import uvloop  # noqa: PLC0415  (optional: imported only when it runs the service)

    return uvloop.new_event_loop


app.command(
    "serve",
    help="Serve the gRPC API (GetSlots, InvalidateSlots) and the Cal.com webhook.",
)(settings_command(Settings, _serve))


app.command("lab")(lab)


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
