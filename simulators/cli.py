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
    from collections.abc import Callable, Iterable
    from decimal import Decimal

    from simulators.mqtt_devices import BrokerLogin
    from simulators.running import Handler, RunningTwin

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


@app.callback()
def _group() -> None:
    """Device simulators (twins) that speak the real wire protocols."""


@app.command()
def scanner(
    *,
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
        typer.Option(exists=True, dir_okay=False, help="lines to take first, as if typed on stdin"),
    ] = None,
) -> None:
    """Simulate a serial barcode scanner on a pseudo-terminal.

    Prints 'device: /dev/pts/N' (and 'link: PATH'), then takes the script, then stdin.

    A line is one read (<GS> stands for the FNC1 separator, 0x1D) unless it is a command.

    Commands are never sent: 'help' lists them ('!garbage', '!half', '!drop-gs on', ...).

    '!send TEXT' sends TEXT as a read even if it looks like a command.

    After stdin ends the pty stays open until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_serial_scanner  # noqa: PLC0415

    first = script.read_text(encoding="utf-8").splitlines() if script is not None else []
    _run(
        lambda: start_serial_scanner(
            link, terminator=_TERMINATOR_BYTES[terminator], symbology=symbology
        ),
        first_lines=first,
    )


class PrinterLanguage(enum.StrEnum):
    ZPL = "zpl"
    TSPL = "tspl"


class UnitChoice(enum.StrEnum):
    MG = "mg"
    G = "g"
    KG = "kg"
    LB = "lb"
    OZ = "oz"


@app.command()
def scale(
    *,
    link: Annotated[
        Path | None,
        typer.Option(help="create (or replace) a symlink here to the pty, like socat link="),
    ] = None,
    tcp: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="listen on this loopback TCP port (0: a free one)"),
    ] = None,
    weight: Annotated[str, typer.Option(help="gross load on the platform at start")] = "0",
    unit: Annotated[UnitChoice, typer.Option(help="the unit the scale displays")] = UnitChoice.G,
    decimals: Annotated[int, typer.Option(min=0, max=6, help="readability, in decimals")] = 2,
    capacity: Annotated[str, typer.Option(help="maximum load, in the display unit")] = "5100",
) -> None:
    """Simulate an MT-SICS (Mettler Toledo) scale on a pseudo-terminal and/or TCP.

    A pty unless only --tcp is given; both with --link and --tcp.

    Prints 'device: /dev/pts/N', or 'device: tcp://127.0.0.1:PORT' with --tcp alone.

    Then reads commands on stdin, one per line, to change the load or inject faults ('help').

    After stdin ends the device stays up until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_mtsics_scale  # noqa: PLC0415

    load, most = _decimal(weight, "--weight"), _decimal(capacity, "--capacity")
    _run(
        lambda: start_mtsics_scale(
            link,
            pty=link is not None or tcp is None,
            tcp_port=tcp,
            weight=load,
            unit=unit.value,
            decimals=decimals,
            capacity=most,
        )
    )


# -- every twin: one way to start, announce, serve stdin and stop --------------------------


def _decimal(text: str, option: str) -> Decimal:
    """An option's exact decimal, or a usage error naming the option (never a float)."""
    from simulators.running import parse_decimal  # noqa: PLC0415

    try:
        return parse_decimal(text, option)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


def _answer(command: Handler, line: str, *, keep_spaces: bool = False) -> None:
    """Carry out one stdin line; a line the twin does not understand is reported, not fatal.

    A line that was understood but could not be carried out (the pty's buffer is full
    because nobody reads it) is ``not done``, so a correct command is not blamed on typing.
    """
    import sys  # noqa: PLC0415

    from simulators.running import COMMAND_ERRORS  # noqa: PLC0415

    text = line.rstrip("\r\n") if keep_spaces else line.strip()
    if not text.strip():
        return
    try:
        answer = command(text)
    except (TimeoutError, OSError) as exc:
        typer.echo(f"not done: {text!r}: {exc}", err=True)
        sys.stderr.flush()
        return
    except COMMAND_ERRORS as exc:
        typer.echo(f"not understood: {text!r}: {exc}", err=True)
        sys.stderr.flush()
        return
    if answer is not None:
        typer.echo(answer)
    sys.stdout.flush()


def _start_failed(exc: BaseException) -> typer.Exit:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    if isinstance(exc, OSError) and exc.filename:
        reason = f"{reason}: {exc.filename}"
    typer.echo(f"Error: the twin did not start: {reason}", err=True)
    return typer.Exit(1)


def _run(start: Callable[[], RunningTwin], *, first_lines: Iterable[str] = ()) -> None:
    """Start one twin, print where it is (``device:`` first), serve stdin, close on a signal.

    Every ``jxc sim`` command runs its twin through here, and ``jxc sim site`` gives its
    lines to the same command handlers, so a line means the same thing everywhere.
    ``first_lines`` are taken before stdin, as if typed (a scanner's ``--script``).
    """
    import sys  # noqa: PLC0415

    from simulators.running import StopSignals, serve_stdin  # noqa: PLC0415

    with StopSignals() as signals:
        try:
            twin = start()
        except (OSError, ValueError, TimeoutError) as exc:
            raise _start_failed(exc) from None
        try:
            for line in twin.announce():
                typer.echo(line)
            sys.stdout.flush()

            def take(line: str) -> None:
                _answer(twin.command, line, keep_spaces=twin.keep_spaces)

            for line in first_lines:
                if signals.stopping:
                    break
                take(line)
            serve_stdin(take, signals)
        finally:
            twin.close()


@app.command()
def printer(
    *,
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="loopback TCP port (0: a free one) [default: 9100, or a free one with a pty]",
        ),
    ] = None,
    link: Annotated[
        Path | None,
        typer.Option(help="also offer a pty (serial line), with a symlink here to it"),
    ] = None,
    pty: Annotated[bool, typer.Option("--pty", help="offer a pty without a link")] = False,
    store: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="write every printed label here as a .zpl or .tspl file"
        ),
    ] = None,
    silent_when_faulted: Annotated[
        bool,
        typer.Option(help="like current firmware: no ~HS reply while paper/ribbon out, head open"),
    ] = False,
    language: Annotated[
        PrinterLanguage,
        typer.Option(help="zpl (Zebra) or tspl (TSC, Gprinter and clones)"),
    ] = PrinterLanguage.ZPL,
) -> None:
    """Simulate a ZPL (Zebra) or TSPL (TSC, Gprinter) label printer on raw TCP and/or a pty.

    Prints 'device: tcp://127.0.0.1:PORT' (or the pty, with --link/--pty, and 'tcp:' then).

    Then reads commands on stdin, one per line ('help' lists them): paper-out, head-open,
    pause, resume, no-hs-reply, labels, last, status, ... until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_printer  # noqa: PLC0415

    _run(
        lambda: start_printer(
            port,
            pty=pty,
            link=link,
            store=store,
            silent_when_faulted=silent_when_faulted,
            language=language.value,
        )
    )


@app.command("toledo-scale")
def toledo_scale(
    *,
    link: Annotated[
        Path | None,
        typer.Option(help="create (or replace) a symlink here to the pty, like socat link="),
    ] = None,
    weight: Annotated[str, typer.Option(help="gross load on the platform at start")] = "0",
    unit: Annotated[
        UnitChoice, typer.Option(help="the unit the display shows (the frame has none)")
    ] = UnitChoice.KG,
    decimals: Annotated[int, typer.Option(min=0, max=4, help="readability, in decimals")] = 3,
    capacity: Annotated[str, typer.Option(help="maximum load, in the display unit")] = "15",
) -> None:
    """Simulate a Toledo 8217 scale (answers W with STX weight CR) on a pseudo-terminal.

    Prints 'device: /dev/pts/N' (and 'link: PATH').

    Then reads commands on stdin, one per line ('help' lists them), until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_toledo_scale  # noqa: PLC0415

    load, most = _decimal(weight, "--weight"), _decimal(capacity, "--capacity")
    _run(
        lambda: start_toledo_scale(
            link, weight=load, unit=unit.value, decimals=decimals, capacity=most
        )
    )


@app.command("modbus-scale")
def modbus_scale(
    *,
    profile: Annotated[
        str,
        typer.Option(help="register profile: a .toml file, or a built-in profile's name"),
    ] = "generic-int32-cdab",
    tcp_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Modbus TCP on this loopback port (0: a free one)"),
    ] = None,
    rtu: Annotated[bool, typer.Option("--rtu", help="Modbus RTU on a pty")] = False,
    link: Annotated[
        Path | None,
        typer.Option(help="Modbus RTU on a pty, with a symlink here to it (implies --rtu)"),
    ] = None,
    unit_id: Annotated[
        list[int] | None,
        typer.Option(min=1, max=247, help="unit id served (repeat for several) [default: 1]"),
    ] = None,
    weight: Annotated[str, typer.Option(help="gross load on every platform at start")] = "0",
) -> None:
    """Simulate Modbus weight transmitters on loopback TCP and/or RTU over a pty.

    Modbus TCP on a free port unless --tcp-port, --rtu or --link says otherwise. Prints
    'device: tcp://127.0.0.1:PORT' or 'device: /dev/pts/N' (both: 'rtu:' second).

    Then reads commands on stdin, one per line ('help' lists them), until SIGTERM or Ctrl-C.
    """
    from simulators.running import resolve_profile, start_modbus_scale  # noqa: PLC0415

    load = _decimal(weight, "--weight")
    try:
        profile_path = resolve_profile(profile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--profile'") from None
    units = list(dict.fromkeys(unit_id or [1]))
    if tcp_port is None and not rtu and link is None:
        tcp_port = 0
    _run(
        lambda: start_modbus_scale(
            profile_path, tcp_port=tcp_port, rtu=rtu, link=link, units=units, weight=load
        )
    )


@app.command("mqtt-scanner")
def mqtt_scanner(
    *,
    host: Annotated[str, typer.Option(help="the MQTT broker's host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="the MQTT broker's port")] = 1883,
    device_id: Annotated[
        str, typer.Option(help="the device's id, as in the site file; it is in the topics")
    ] = "scanner-1",
    topic: Annotated[
        str | None,
        typer.Option(help="publish reads here [default: jxc/scanners/DEVICE_ID/scan]"),
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="publish raw reads instead of JSON {data, symbology}")
    ] = False,
    symbology: Annotated[
        str | None,
        typer.Option(help="AIM identifier sent with every read, e.g. ']C1' for GS1-128"),
    ] = None,
    username: Annotated[str | None, typer.Option(help="the broker account")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="a file holding the account's password on one line")
    ] = None,
    tls_ca_file: Annotated[
        Path | None, typer.Option(help="speak TLS, trusting this CA bundle for the broker")
    ] = None,
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="the device's own certificate, if the broker asks")
    ] = None,
    tls_key_file: Annotated[Path | None, typer.Option(help="that certificate's key")] = None,
) -> None:
    """Simulate a barcode scanner that publishes its reads to an MQTT broker.

    Prints 'device: mqtt://HOST:PORT/TOPIC' once connected (or after 5 s, with a warning:
    it keeps retrying, and keeps what it reads meanwhile).

    Then publishes every stdin line as one read (<GS> stands for FNC1); '!' lines are
    faults, 'help' lists them. Runs until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_mqtt_scanner  # noqa: PLC0415

    if not device_id:
        raise typer.BadParameter("must not be empty", param_hint="'--device-id'")
    _run(
        lambda: start_mqtt_scanner(
            device_id,
            host=host,
            port=port,
            topic=topic.replace("{device_id}", device_id) if topic else None,
            shape="raw" if raw else "json",
            symbology=symbology,
            login=_login(username, password_file, tls_ca_file, tls_cert_file, tls_key_file),
        )
    )


@app.command("mqtt-scale")
def mqtt_scale(
    *,
    host: Annotated[str, typer.Option(help="the MQTT broker's host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="the MQTT broker's port")] = 1883,
    device_id: Annotated[
        str, typer.Option(help="the device's id, as in the site file; it is in the topics")
    ] = "scale-1",
    weight: Annotated[str, typer.Option(help="gross load on the platform at start")] = "0",
    unit: Annotated[UnitChoice, typer.Option(help="the unit of every reading")] = UnitChoice.KG,
    decimals: Annotated[int, typer.Option(min=0, max=6, help="readability, in decimals")] = 3,
    capacity: Annotated[str, typer.Option(help="maximum load, in the unit")] = "150",
    interval: Annotated[
        float, typer.Option(min=0.01, max=60.0, help="seconds between two readings")
    ] = 0.05,
    username: Annotated[str | None, typer.Option(help="the broker account")] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="a file holding the account's password on one line")
    ] = None,
    tls_ca_file: Annotated[
        Path | None, typer.Option(help="speak TLS, trusting this CA bundle for the broker")
    ] = None,
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="the device's own certificate, if the broker asks")
    ] = None,
    tls_key_file: Annotated[Path | None, typer.Option(help="that certificate's key")] = None,
) -> None:
    """Simulate a scale that publishes its weight to an MQTT broker and takes zero/tare.

    Topics: jxc/scales/DEVICE_ID/weight, .../command, .../reply, .../availability. Prints
    'device: mqtt://HOST:PORT/jxc/scales/DEVICE_ID/weight' once connected (or after 5 s).

    Then reads commands on stdin, one per line ('help' lists them), until SIGTERM or Ctrl-C.
    """
    from simulators.running import start_mqtt_scale  # noqa: PLC0415

    if not device_id:
        raise typer.BadParameter("must not be empty", param_hint="'--device-id'")
    load, most = _decimal(weight, "--weight"), _decimal(capacity, "--capacity")
    _run(
        lambda: start_mqtt_scale(
            device_id,
            host=host,
            port=port,
            weight=load,
            unit=unit.value,
            decimals=decimals,
            capacity=most,
            interval=interval,
            login=_login(username, password_file, tls_ca_file, tls_cert_file, tls_key_file),
        )
    )


def _login(
    username: str | None,
    password_file: Path | None,
    tls_ca_file: Path | None,
    tls_cert_file: Path | None,
    tls_key_file: Path | None,
) -> BrokerLogin | None:
    """How the twin logs in to the broker, from its options; None for an open broker.

    The password comes from a file, never the command line (which every user of the box
    can read in the process list).
    """
    from simulators.mqtt_devices import BrokerLogin  # noqa: PLC0415

    if password_file is not None and username is None:
        raise typer.BadParameter("a password needs --username", param_hint="'--password-file'")
    if (tls_cert_file is None) != (tls_key_file is None):
        raise typer.BadParameter("give both or neither", param_hint="'--tls-cert-file'")
    password = None
    if password_file is not None:
        try:
            password = password_file.read_text("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(
                f"cannot read {password_file}: {type(exc).__name__}", param_hint="'--password-file'"
            ) from None
    if username is None and tls_ca_file is None and tls_cert_file is None:
        return None
    return BrokerLogin(
        username=username,
        password=password,
        tls_ca_file=tls_ca_file,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
    )


_SITE_HELP = """\
DEVICE-ID COMMAND   give COMMAND to that device's twin ('DEVICE-ID help' lists its commands)
devices             every device, its driver and where its twin is
help                this list"""


@app.command()
def site(
    *,
    config: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="the edge agent's site file (TOML)"),
    ],
    skip_unknown: Annotated[
        bool,
        typer.Option(help="leave out devices whose driver has no twin (warn) instead of failing"),
    ] = False,
) -> None:
    """Simulate every device a site file names: one twin each, where the drivers look.

    Prints one line per device, 'DEVICE-ID: ENDPOINT' (a pty link path, tcp://127.0.0.1:PORT
    or mqtt://HOST:PORT/TOPIC), in the file's order.

    Drivers with twins: serial-line, mqtt-scanner, mt-sics, toledo-8217, modbus-scale,
    mqtt-scale, zpl, tspl. Any other driver is an error (or, with --skip-unknown, a warning).
    If one twin fails to start, the others are closed again and the exit status is 1.

    Then reads 'DEVICE-ID COMMAND' lines on stdin ('help'), until SIGTERM or Ctrl-C, and
    closes every twin (removing its pty links).
    """
    import sys  # noqa: PLC0415

    from simulators.running import StopSignals, serve_stdin  # noqa: PLC0415
    from simulators.site import SimulatedSite, SiteError, start_site  # noqa: PLC0415

    def handle(simulated: SimulatedSite, line: str) -> None:
        text = line.rstrip("\r\n").lstrip()
        if not text.strip():
            return
        device_id, _, rest = text.partition(" ")
        if device_id == "help" and not rest.strip():
            typer.echo(_SITE_HELP)
        elif device_id == "devices" and not rest.strip():
            for device in simulated.devices:
                typer.echo(f"{device.device_id}: {device.endpoint}  ({device.driver})")
        else:
            try:
                device = simulated.device(device_id)
            except ValueError as exc:
                typer.echo(f"not understood: {text!r}: {exc}", err=True)
                return
            keep = device.section == "scanners"
            _answer(device.command, rest if keep else rest.strip(), keep_spaces=keep)
            return
        sys.stdout.flush()

    with StopSignals() as signals:
        try:
            simulated = start_site(config, skip_unknown=skip_unknown)
        except SiteError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None
        try:
            for warning in simulated.warnings:
                typer.echo(f"warning: {warning}", err=True)
            for device in simulated.devices:
                typer.echo(f"{device.device_id}: {device.endpoint}")
            sys.stdout.flush()
            serve_stdin(lambda line: handle(simulated, line), signals)
        finally:
            simulated.close()
