"""``jxc sim ...``: device twins run from a shell, for demos and integration tests.

Only typer is imported at module level: the ``jxc`` root command loads every command group
on start, and ``jxc --help`` should not pay for opening ptys or importing device libraries.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from simulators.scale import MtSicsScaleTwin
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


class UnitChoice(enum.StrEnum):
    MG = "mg"
    G = "g"
    KG = "kg"
    LB = "lb"
    OZ = "oz"


_ERROR_CODES: dict[str, Literal["ES", "ET", "EL"]] = {"ES": "ES", "ET": "ET", "EL": "EL"}

_SCALE_HELP = """\
weight VALUE [UNIT] [SETTLE]  put a load on the platform (SETTLE: seconds of swinging first)
wobble SECONDS [AMPLITUDE]    swing for a while, then hold still
overload | underload | busy   report that state until 'clear'
error ES|ET|EL [N]            answer the next N commands with that error
noreply [N|forever]           swallow the next N commands (default 1)
garble [N]                    replace the next N replies by line noise
cut [N]                       send only half of the next N replies
delay SECONDS                 hold every reply back this long
garbage                       send line noise now
disconnect [SECONDS]          vanish; come back after SECONDS (or on 'reconnect')
reconnect                     come back now
clear                         back to a healthy device
status                        print load, tare and connection"""


@app.command()
def scale(
    *,
    link: Annotated[
        Path | None,
        typer.Option(help="create (or replace) a symlink here to the pty, like socat link="),
    ] = None,
    tcp: Annotated[
        int | None,
        typer.Option(help="listen on this loopback TCP port (0 picks a free one)"),
    ] = None,
    weight: Annotated[str, typer.Option(help="gross load on the platform at start")] = "0",
    unit: Annotated[UnitChoice, typer.Option(help="the unit the scale displays")] = UnitChoice.G,
    decimals: Annotated[int, typer.Option(min=0, max=6, help="readability, in decimals")] = 2,
    capacity: Annotated[str, typer.Option(help="maximum load, in the display unit")] = "5100",
) -> None:
    """Simulate an MT-SICS (Mettler Toledo) scale on a pseudo-terminal and/or TCP.

    A pty unless only --tcp is given; both with --link and --tcp. Prints where it listens.

    Then reads commands on stdin, one per line, to change the load or inject faults ('help').

    After stdin ends the device stays up until SIGTERM or Ctrl-C.
    """
    import signal  # noqa: PLC0415 - keep the jxc command line fast to start
    import sys  # noqa: PLC0415
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415

    from simulators.scale import MtSicsScaleTwin  # noqa: PLC0415

    try:
        load, most = Decimal(weight), Decimal(capacity)
    except InvalidOperation:
        raise typer.BadParameter("--weight and --capacity must be decimal numbers") from None

    def stop(_signum: int, _frame: object) -> None:
        raise _StopRequested

    signal.signal(signal.SIGTERM, stop)
    twin = MtSicsScaleTwin(
        link,
        pty=link is not None or tcp is None,
        tcp_port=tcp,
        weight=load,
        unit=unit.value,
        decimals=decimals,
        capacity=most,
    )
    try:
        if twin.device_path is not None:
            typer.echo(f"device: {twin.device_path}")
        if link is not None:
            typer.echo(f"link: {link}")
        if twin.tcp_address is not None:
            host, port = twin.tcp_address
            typer.echo(f"tcp: {host}:{port}")
        sys.stdout.flush()
        for line in iter(sys.stdin.readline, ""):
            text = line.strip()
            if text:
                try:
                    _scale_command(twin, text)
                except (ValueError, IndexError, InvalidOperation) as exc:
                    typer.echo(f"not understood: {text!r}: {exc}", err=True)
                sys.stdout.flush()
        while True:
            signal.pause()
    except (_StopRequested, KeyboardInterrupt):
        pass
    finally:
        twin.close()


def _scale_command(twin: MtSicsScaleTwin, text: str) -> None:
    from decimal import Decimal  # noqa: PLC0415

    word, *args = text.split()
    count = int(args[0]) if args and args[0].isdigit() else 1
    if word == "weight":
        settle = float(args[2]) if len(args) > 2 else 0.0
        twin.set_weight(Decimal(args[0]), args[1] if len(args) > 1 else None, settle=settle)
    elif word == "wobble":
        twin.wobble(float(args[0]), Decimal(args[1]) if len(args) > 1 else None)
    elif word in ("overload", "underload", "busy", "clear", "garbage", "reconnect"):
        actions = {
            "overload": twin.overload,
            "underload": twin.underload,
            "busy": twin.busy,
            "clear": twin.clear_faults,
            "garbage": twin.send_garbage,
            "reconnect": twin.reconnect,
        }
        actions[word]()
    elif word == "error" and args and args[0] in _ERROR_CODES:
        twin.reply_error(_ERROR_CODES[args[0]], int(args[1]) if len(args) > 1 else 1)
    elif word == "noreply":
        twin.no_reply(None if args == ["forever"] else count)
    elif word == "garble":
        twin.garble_replies(count)
    elif word == "cut":
        twin.cut_replies(count)
    elif word == "delay":
        twin.set_delay(float(args[0]))
    elif word == "disconnect":
        twin.disconnect(float(args[0]) if args else None)
    elif word == "status":
        typer.echo(
            f"net: {twin.net} {twin.unit}  tare: {twin.tare_weight} {twin.unit}  "
            f"connected: {twin.connected}  device: {twin.device_path}"
        )
    elif word == "help":
        typer.echo(_SCALE_HELP)
    else:
        raise ValueError("unknown command; try 'help'")
