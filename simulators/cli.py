"""``jxc sim ...``: device twins run from a shell, for demos and integration tests.

Only typer is imported at module level: the ``jxc`` root command loads every command group
on start, and ``jxc --help`` should not pay for opening ptys or importing device libraries.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simulators.scanner import ScannerTwin

app = typer.Typer(
    help="Device simulators (twins) that speak the real wire protocols.",
    no_args_is_help=True,
)


class TerminatorChoice(enum.StrEnum):
    CR = "CR"
    LF = "LF"
    CRLF = "CRLF"


_TERMINATOR_BYTES = {
    TerminatorChoice.CR: b"\r",
    TerminatorChoice.LF: b"\n",
    TerminatorChoice.CRLF: b"\r\n",
}


class _StopRequested(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM, turned into an exception so ``finally`` blocks still remove the link."""


@app.callback()
def _group() -> None:
    """Device simulators (twins) that speak the real wire protocols."""


@app.command()
def scanner(
    link: Annotated[
        Path | None,
        typer.Option(help="create (or replace) a symlink here to the pty, like socat link="),
    ] = None,
    terminator: Annotated[
        TerminatorChoice, typer.Option(help="line end the simulated scanner sends")
    ] = TerminatorChoice.CR,
    symbology: Annotated[
        str | None,
        typer.Option(help="AIM identifier put before every read, e.g. ']C1' for GS1-128"),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="reads to send first, one per line"),
    ] = None,
) -> None:
    """Simulate a serial barcode scanner on a pseudo-terminal.

    Prints the device path, sends the script's lines, then each line typed on stdin.

    In a line, <GS> stands for the FNC1 separator (0x1D).

    Control lines: '!garbage' sends noise, '!half' half a line, '!raw HEX' those bytes.

    After stdin ends the pty stays open until SIGTERM or Ctrl-C.
    """
    import signal  # noqa: PLC0415 - keep the jxc command line fast to start
    import sys  # noqa: PLC0415

    from simulators.scanner import ScannerTwin  # noqa: PLC0415

    def stop(_signum: int, _frame: object) -> None:
        raise _StopRequested

    signal.signal(signal.SIGTERM, stop)
    twin = ScannerTwin(link=link, terminator=_TERMINATOR_BYTES[terminator])
    try:
        typer.echo(f"device: {twin.device_path}")
        if link is not None:
            typer.echo(f"link: {link}")
        sys.stdout.flush()
        if script is not None:
            _send_lines(twin, script.read_text(encoding="utf-8").splitlines(), symbology)
        _send_lines(twin, iter(sys.stdin.readline, ""), symbology)
        while True:
            signal.pause()
    except (_StopRequested, KeyboardInterrupt):
        pass
    finally:
        twin.close()


def _send_lines(twin: ScannerTwin, lines: Iterable[str], symbology: str | None) -> None:
    for line in lines:
        text = line.rstrip("\r\n")
        if not text:
            continue
        try:
            _send_line(twin, text, symbology)
        except (ValueError, TimeoutError) as exc:
            typer.echo(f"not sent: {text!r}: {exc}", err=True)


def _send_line(twin: ScannerTwin, text: str, symbology: str | None) -> None:
    if text == "!garbage":
        twin.send_garbage()
    elif text == "!half":
        twin.send_half_line()
    elif text == "!raw" or text.startswith("!raw "):
        twin.send_raw(bytes.fromhex(text.removeprefix("!raw")))
    else:
        twin.send(text.replace("<GS>", "\x1d"), symbology=symbology)
