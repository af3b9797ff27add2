"""Twins as the command line runs them: where a driver opens each one, what it understands on
stdin, and how it stops.

``jxc sim <twin>`` runs one of these and ``jxc sim site`` runs many, so both share this
module: a site's ``scale-1 overload`` line goes through exactly the code that ``overload``
typed into ``jxc sim scale`` does. Every twin module is imported only when its twin is
started, so ``jxc sim --help`` and a site without MQTT devices never load paho or pymodbus.

A command handler takes one operator line and returns the text to print (or ``None``). For
a line it does not understand it raises :class:`ValueError` (or ``IndexError`` /
``ArithmeticError``), which :func:`serve_stdin`'s callers report and then carry on: a typo
must never take a simulated device down.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from simulators.modbus_scale import ModbusScaleTwin, WireFault
    from simulators.mqtt_devices import BrokerLogin, MqttScaleTwin, MqttScannerTwin, PayloadShape
    from simulators.printer import ZplPrinterTwin
    from simulators.scale import MtSicsScaleTwin
    from simulators.scanner import ScannerTwin

__all__ = [
    "COMMAND_ERRORS",
    "Handler",
    "RunningTwin",
    "StopSignals",
    "builtin_profile_names",
    "builtin_profile_path",
    "mtsics_command",
    "parse_decimal",
    "parse_seconds",
    "serial_scanner_command",
    "serve_stdin",
    "start_modbus_scale",
    "start_mqtt_scale",
    "start_mqtt_scanner",
    "start_mtsics_scale",
    "start_printer",
    "start_serial_scanner",
    "start_toledo_scale",
]

Handler = Callable[[str], "str | None"]

COMMAND_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    IndexError,
    ArithmeticError,
    TimeoutError,
    OSError,
)
"""What a command handler raises for a line it cannot carry out (reported, not fatal)."""

DEFAULT_PROFILE = "generic-int32-cdab"
"""The Modbus register profile ``jxc sim modbus-scale`` serves when given none."""


@dataclass
class RunningTwin:
    """One started twin: what to print, what to do with stdin lines, how to stop it.

    ``device`` is what a driver opens (a ``/dev/pts/N`` path, ``tcp://127.0.0.1:PORT`` or
    ``mqtt://host:port/topic``); ``link`` the stable symlink to a pty, when there is one.
    ``extra`` holds further ``label: value`` lines (a second endpoint, a store folder).
    """

    kind: str
    device: str
    command: Handler
    help: str
    close: Callable[[], None]
    link: Path | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)
    for_unit: Callable[[int], Handler] | None = None
    """Modbus only: a handler whose commands act on that unit id by default."""
    keep_spaces: bool = False
    """Scanners: a line is data, so only its line end is taken off, not its spaces."""

    @property
    def endpoint(self) -> str:
        """What a site file names for this device: the link if there is one."""
        return str(self.link) if self.link is not None else self.device

    def announce(self) -> list[str]:
        """The lines ``jxc sim <twin>`` prints first, ``device:`` always the first one."""
        lines = [f"device: {self.device}"]
        if self.link is not None:
            lines.append(f"link: {self.link}")
        lines += [f"{label}: {value}" for label, value in self.extra]
        return lines


# -- values typed by an operator -----------------------------------------------------------


def parse_decimal(text: str, what: str = "value") -> Decimal:
    """A finite decimal, or a :class:`ValueError` that names ``what``; never a float."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{what} must be a decimal number, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite decimal number, got {text!r}")
    return value


def parse_seconds(text: str, what: str = "seconds") -> float:
    """A duration (a float is right for time); negative, NaN or infinite is refused."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"{what} must be zero or more seconds, got {text!r}")
    return value


def _count(args: list[str], default: int = 1) -> int:
    if not args:
        return default
    if not args[0].isdigit():
        raise ValueError(f"want a whole number, got {args[0]!r}")
    return int(args[0])


def _on_off(args: list[str]) -> bool:
    if not args:
        return True
    if args[0] in ("on", "off"):
        return args[0] == "on"
    raise ValueError(f"want on or off, got {args[0]!r}")


# -- stdin and signals ---------------------------------------------------------------------


class StopSignals:
    """SIGTERM and SIGINT as a flag, from the moment twins start until they are closed.

    Signals only set :attr:`stopping` (and wake :func:`serve_stdin`'s ``select`` through a
    wakeup pipe), so a twin is never interrupted halfway through starting or through a
    command, and the caller's ``finally`` always closes it and removes its links.
    """

    def __init__(self) -> None:
        self.stopping = False
        self._wake_r = self._wake_w = -1
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    def __enter__(self) -> StopSignals:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._previous_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _on_signal(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    @property
    def wake_fd(self) -> int:
        """Readable once a signal arrived (drain it with :meth:`drain`)."""
        return self._wake_r

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)


def serve_stdin(handle: Callable[[str], None], signals: StopSignals) -> None:
    """Give each stdin line to ``handle`` until ``signals`` says stop; then return normally.

    After stdin ends the twins keep running until the signal, as a plugged-in device does.
    """
    stdin_fd: int | None
    try:
        stdin_fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        stdin_fd = None  # no stdin at all (closed, or replaced by something without one)
    pending = b""
    while not signals.stopping:
        watched = [signals.wake_fd] if stdin_fd is None else [signals.wake_fd, stdin_fd]
        try:
            readable, _, _ = select.select(watched, [], [])
        except OSError:  # stdin is not something select can watch: treat it as ended
            stdin_fd = None
            continue
        if signals.wake_fd in readable:
            signals.drain()
        if stdin_fd is None or stdin_fd not in readable:
            continue
        try:
            data = os.read(stdin_fd, 65536)
        except OSError:
            data = b""
        if not data:  # end of input: a last line without its newline still counts
            stdin_fd = None
            data = b"\n" if pending else b""
        pending += data
        while b"\n" in pending and not signals.stopping:
            line, pending = pending.split(b"\n", 1)
            handle(line.decode("utf-8", errors="replace"))


# -- serial scanner ------------------------------------------------------------------------

SERIAL_SCANNER_HELP = """\
TEXT               send TEXT as one read (<GS> stands for the FNC1 separator, 0x1D)
!send TEXT         send TEXT even if it looks like a command (e.g. 'help' or '!half')
!garbage           send line noise
!half              send half a read and never finish it
!raw HEX           send exactly these bytes
!drop-gs [on|off]  leave the GS separators out of reads (a misconfigured scanner)
help | !help       this list
Any other line starting with '!' is refused, never sent."""


def serial_scanner_command(twin: ScannerTwin, text: str, symbology: str | None) -> str | None:
    """One operator line for a serial scanner twin (see :data:`SERIAL_SCANNER_HELP`).

    A console command is carried out and never sent: a scanner typed ``help`` into must
    not put ``help`` on the wire as a read. Only a line that is no command (or the text
    of ``!send``) becomes a read, and an unknown ``!`` line is refused, since it is far
    more likely a mistyped command than a barcode.
    """
    word, _, rest = text.partition(" ")
    if text.strip() in ("help", "!help"):
        return SERIAL_SCANNER_HELP
    if text == "!garbage":
        twin.send_garbage()
    elif text == "!half":
        twin.send_half_line()
    elif word == "!raw":
        twin.send_raw(bytes.fromhex(rest))
    elif word == "!drop-gs":
        twin.drop_gs_separators(_on_off(rest.split()))
    elif word == "!send":
        twin.send(rest.replace("<GS>", "\x1d"), symbology=symbology)
    elif word.startswith("!"):
        raise ValueError("unknown control line; try 'help' (or '!send TEXT' to send it)")
    else:
        twin.send(text.replace("<GS>", "\x1d"), symbology=symbology)
    return None


def start_serial_scanner(
    link: Path | None, *, terminator: bytes = b"\r", symbology: str | None = None
) -> RunningTwin:
    """A serial barcode scanner on a pty (behind ``link``)."""
    from simulators.scanner import ScannerTwin  # noqa: PLC0415 - loaded only when used

    twin = ScannerTwin(link=link, terminator=terminator)
    return RunningTwin(
        "scanner",
        twin.device_path,
        lambda text: serial_scanner_command(twin, text, symbology),
        SERIAL_SCANNER_HELP,
        twin.close,
        link,
        keep_spaces=True,
    )


# -- MT-SICS scale -------------------------------------------------------------------------

MTSICS_HELP = """\
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

_MTSICS_ERRORS: dict[str, Literal["ES", "ET", "EL"]] = {"ES": "ES", "ET": "ET", "EL": "EL"}


def mtsics_command(twin: MtSicsScaleTwin, text: str) -> str | None:
    """One operator line for an MT-SICS scale twin (see :data:`MTSICS_HELP`)."""
    word, *args = text.split()
    simple: dict[str, Callable[[], None]] = {
        "overload": twin.overload,
        "underload": twin.underload,
        "busy": twin.busy,
        "clear": twin.clear_faults,
        "garbage": twin.send_garbage,
        "reconnect": twin.reconnect,
    }
    if word in simple:
        simple[word]()
    elif word == "weight":
        settle = parse_seconds(args[2], "SETTLE") if len(args) > 2 else 0.0
        unit = args[1] if len(args) > 1 else None
        twin.set_weight(parse_decimal(args[0], "the weight"), unit, settle=settle)
    elif word == "wobble":
        amplitude = parse_decimal(args[1], "the amplitude") if len(args) > 1 else None
        twin.wobble(parse_seconds(args[0]), amplitude)
    elif word == "error" and args and args[0] in _MTSICS_ERRORS:
        twin.reply_error(_MTSICS_ERRORS[args[0]], _count(args[1:]))
    elif word == "noreply":
        twin.no_reply(None if args == ["forever"] else _count(args))
    elif word == "garble":
        twin.garble_replies(_count(args))
    elif word == "cut":
        twin.cut_replies(_count(args))
    elif word == "delay":
        twin.set_delay(parse_seconds(args[0]))
    elif word == "disconnect":
        twin.disconnect(parse_seconds(args[0]) if args else None)
    elif word == "status":
        return (
            f"net: {twin.net} {twin.unit}  tare: {twin.tare_weight} {twin.unit}  "
            f"connected: {twin.connected}  device: {twin.device_path}"
        )
    elif word == "help":
        return MTSICS_HELP
    else:
        raise ValueError("unknown command; try 'help'")
    return None


def start_mtsics_scale(
    link: Path | None,
    *,
    pty: bool = True,
    tcp_port: int | None = None,
    weight: Decimal = Decimal(0),
    unit: str = "g",
    decimals: int = 2,
    capacity: Decimal = Decimal(5100),
) -> RunningTwin:
    """An MT-SICS scale on a pty (behind ``link``) and/or a loopback TCP port."""
    from simulators.scale import MtSicsScaleTwin  # noqa: PLC0415 - loaded only when used

    twin = MtSicsScaleTwin(
        link,
        pty=pty,
        tcp_port=tcp_port,
        weight=weight,
        unit=unit,
        decimals=decimals,
        capacity=capacity,
    )
    tcp = twin.tcp_address
    tcp_url = None if tcp is None else f"tcp://{tcp[0]}:{tcp[1]}"
    device = twin.device_path or tcp_url
    assert device is not None  # the twin refuses to start with neither
    extra = [("tcp", tcp_url)] if tcp_url is not None and twin.device_path is not None else []
    return RunningTwin(
        "mt-sics scale",
        device,
        lambda text: mtsics_command(twin, text),
        MTSICS_HELP,
        twin.close,
        link if twin.device_path is not None else None,
        extra,
    )


# -- Toledo 8217 scale ---------------------------------------------------------------------


def start_toledo_scale(
    link: Path | None,
    *,
    weight: Decimal = Decimal(0),
    unit: str = "kg",
    decimals: int = 3,
    capacity: Decimal = Decimal(15),
) -> RunningTwin:
    """A Toledo 8217 scale on a pty (behind ``link``)."""
    from simulators.toledo8217 import HELP, Toledo8217Twin, apply_command  # noqa: PLC0415

    twin = Toledo8217Twin(link, weight=weight, unit=unit, decimals=decimals, capacity=capacity)
    assert twin.device_path is not None
    return RunningTwin(
        "toledo-8217 scale",
        twin.device_path,
        lambda text: apply_command(twin, text),
        HELP,
        twin.close,
        link,
    )


# -- ZPL printer ---------------------------------------------------------------------------

PRINTER_HELP = """\
paper-out | paper-in        media out (stops printing, ~HS says so) / loaded again
head-open | head-close      print head opened / closed
ribbon-out | ribbon-in      ribbon out / loaded again
pause | resume              pause the printer / resume printing
no-hs-reply | hs-reply      stop / start answering ~HS (aliases: mute-status, unmute-status)
drop-next [mid-job|after-job]  cut the connection in the next format, or right after it
slow REPLY_S [PRINT_S]      delay every status reply, and every printed label
labels                      how many labels were printed, one line each (alias: list)
last                        the raw ZPL of the last printed label
status                      ready or what is wrong, labels waiting and printed, odometer
help                        this list"""

_PRINTER_WORDS = frozenset(
    {
        "paper-out",
        "paper-in",
        "head-open",
        "head-close",
        "ribbon-out",
        "ribbon-in",
        "pause",
        "resume",
        "mute-status",
        "unmute-status",
        "drop-next",
        "slow",
        "list",
        "status",
    }
)
_PRINTER_ALIASES = {"no-hs-reply": "mute-status", "hs-reply": "unmute-status", "labels": "list"}


TSPL_PRINTER_HELP = (
    PRINTER_HELP.replace("~HS", "<ESC>!?").replace("hs-reply", "status-reply")
    + """
cover-open | cover-close    cover opened / closed (TSPL status bit 6)
paper-jam | paper-clear     paper jammed / cleared (TSPL status bit 1)"""
)

_TSPL_TOGGLES = {
    "cover-open": ("cover", True),
    "cover-close": ("cover", False),
    "paper-jam": ("jam", True),
    "paper-clear": ("jam", False),
}


def printer_command(twin: ZplPrinterTwin, text: str) -> str | None:
    """One operator line for a ZPL or TSPL printer twin (see :data:`PRINTER_HELP`)."""
    from simulators.printer import run_command  # noqa: PLC0415 - loaded with the twin
    from simulators.tspl_printer import TsplPrinterTwin  # noqa: PLC0415

    word, _, rest = text.partition(" ")
    word = _PRINTER_ALIASES.get(word, word)
    tspl = isinstance(twin, TsplPrinterTwin)
    if tspl and word in ("no-status-reply", "status-reply"):
        word = "mute-status" if word == "no-status-reply" else "unmute-status"
    if isinstance(twin, TsplPrinterTwin) and word in _TSPL_TOGGLES:
        what, on = _TSPL_TOGGLES[word]
        (twin.set_cover_open if what == "cover" else twin.set_paper_jam)(on)
        return twin.describe()
    if word == "help":
        return TSPL_PRINTER_HELP if tspl else PRINTER_HELP
    if word == "last":
        labels = twin.labels()
        if not labels:
            return "no label printed yet"
        return labels[-1].raw.decode("utf-8", errors="replace")
    if word not in _PRINTER_WORDS:
        raise ValueError("unknown command; try 'help'")
    return run_command(twin, f"{word} {rest}".strip())


def start_printer(
    port: int | None,
    *,
    pty: bool = False,
    link: Path | None = None,
    store: Path | None = None,
    silent_when_faulted: bool = False,
    language: Literal["zpl", "tspl"] = "zpl",
) -> RunningTwin:
    """A ZPL or TSPL printer on loopback TCP ``port`` (0: a free one) and/or a pty.

    On a pty (behind ``link``) the printer still listens on TCP (a free port unless given);
    a :class:`~simulators.pty_bridge.PtyBridge` plays the serial cable between the two.
    """
    from simulators.printer import ZplPrinterTwin  # noqa: PLC0415 - loaded only when used
    from simulators.pty_bridge import PtyBridge  # noqa: PLC0415
    from simulators.tspl_printer import TsplPrinterTwin  # noqa: PLC0415

    pty = pty or link is not None
    if port is None:
        port = 0 if pty else 9100
    twin: ZplPrinterTwin
    if language == "tspl":
        if silent_when_faulted:
            raise ValueError("a TSPL printer always answers its status byte")
        twin = TsplPrinterTwin("127.0.0.1", port, store=store)
    else:
        twin = ZplPrinterTwin(
            "127.0.0.1", port, store=store, silent_when_faulted=silent_when_faulted
        )
    tcp_url = f"tcp://127.0.0.1:{twin.port}"
    bridge: PtyBridge | None = None
    try:
        if pty:
            bridge = PtyBridge(("127.0.0.1", twin.port), link)
    except BaseException:
        twin.close()
        raise

    def close() -> None:
        if bridge is not None:
            bridge.close()
        twin.close()

    extra: list[tuple[str, str]] = []
    if bridge is not None:
        extra.append(("tcp", tcp_url))
    if store is not None:
        extra.append(("store", str(store)))
    return RunningTwin(
        f"{language} printer",
        bridge.device_path if bridge is not None else tcp_url,
        lambda text: printer_command(twin, text),
        TSPL_PRINTER_HELP if language == "tspl" else PRINTER_HELP,
        close,
        link,
        extra,
    )


# -- Modbus scale --------------------------------------------------------------------------

MODBUS_HELP = """\
Commands for one transmitter take @UNIT (a unit id; the first one when left out).
weight VALUE [SETTLE] [@UNIT]   put a gross load on the platform (SETTLE: seconds swinging)
wobble SECONDS [AMPL] [@UNIT]   swing for a while (motion bit on), then hold still
overload | underload [@UNIT]    report that state until 'clear'
error [@UNIT]                   set the status word's error bit (a load-cell fault)
swap-words [on|off] [@UNIT]     send 32-bit values in the other word order
noreply [N|forever]             swallow the next N replies (default 1)
garble [N] | cut [N]            noise instead of / only half of the next N replies
bad-crc [N] | short [N]         RTU CRC broken / one register too few in the next N replies
delay SECONDS                   answer every request this late
garbage                         put line noise on the RTU line now
disconnect | reconnect          vanish (TCP listener closes, RTU cable pulled) / come back
clear                           back to healthy transmitters (loads, zeros, tares stay)
status                          net weight and tare of every unit, connection
help                            this list"""


def modbus_command(twin: ModbusScaleTwin, text: str, default_unit: int | None = None) -> str | None:
    """One operator line for a Modbus scale twin (see :data:`MODBUS_HELP`)."""
    words = text.split()
    unit = default_unit
    for token in [w for w in words if w.startswith("@")]:
        words.remove(token)
        if not token[1:].isdigit() or int(token[1:]) not in twin.unit_ids:
            served = ", ".join(str(u) for u in twin.unit_ids)
            raise ValueError(f"{token}: this twin serves unit id(s) {served}")
        unit = int(token[1:])
    word, *args = words
    wire: dict[str, WireFault] = {
        "garble": "garbage",
        "cut": "cut",
        "bad-crc": "bad_crc",
        "short": "short",
    }

    def weight(args: list[str]) -> None:
        settle = parse_seconds(args[1], "SETTLE") if len(args) > 1 else 0.0
        twin.set_weight(parse_decimal(args[0], "the weight"), settle=settle, unit=unit)

    def wobble(args: list[str]) -> None:
        amplitude = parse_decimal(args[1], "the amplitude") if len(args) > 1 else None
        twin.wobble(parse_seconds(args[0]), amplitude, unit=unit)

    actions: dict[str, Callable[[list[str]], None]] = {
        "weight": weight,
        "wobble": wobble,
        "overload": lambda _: twin.overload(unit),
        "underload": lambda _: twin.underload(unit),
        "error": lambda _: twin.device_error(unit),
        "swap-words": lambda a: twin.swap_words(_on_off(a), unit=unit),
        "noreply": lambda a: twin.no_reply(None if a == ["forever"] else _count(a)),
        "delay": lambda a: twin.set_delay(parse_seconds(a[0])),
        "garbage": lambda _: twin.send_garbage(),
        "disconnect": lambda _: twin.disconnect(),
        "reconnect": lambda _: twin.reconnect(),
        "clear": lambda _: twin.clear_faults(),
    }
    if word in wire:
        twin.wire_fault(wire[word], _count(args))
    elif word in actions:
        actions[word](args)
    elif word == "status":
        unit_name = twin.profile.unit
        units = "  ".join(
            f"unit {u}: net {twin.net(u)} {unit_name} tare {twin.tare_weight(u)} {unit_name}"
            for u in twin.unit_ids
        )
        return f"{units}  connected: {twin.connected}"
    elif word == "help":
        return MODBUS_HELP
    else:
        raise ValueError("unknown command; try 'help'")
    return None


def _drivers_folder() -> Path | None:
    """Where ``device_drivers`` lives, found without importing it (no code of it runs)."""
    import importlib.util  # noqa: PLC0415

    try:
        spec = importlib.util.find_spec("device_drivers")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _profile_folder() -> Path | None:
    package = _drivers_folder()
    return None if package is None else package / "scales" / "profiles"


def builtin_profile_names() -> list[str]:
    """The register profiles shipped with the drivers, by name (file stem)."""
    folder = _profile_folder()
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml"))


def builtin_profile_path(name: str) -> Path:
    """The file of a shipped profile: the twin reads the same data file as the driver.

    The file is located through the installed package's folder, not imported: the twin
    must never run driver code (see ``simulators/__init__.py``), but a data file both
    sides read is the shared definition of the device, like a vendor's register table.
    """
    names = builtin_profile_names()
    folder = _profile_folder()
    if name not in names or folder is None:
        raise ValueError(
            f"no built-in Modbus scale profile {name!r}; built in: {', '.join(names) or 'none'}"
            " (or give the path of a .toml profile)"
        )
    return folder / f"{name}.toml"


def resolve_profile(text: str, base: Path | None = None) -> Path:
    """A ``--profile`` or site ``profile`` value: a path to a TOML file or a shipped name.

    As in the driver, a value ending in ``.toml`` or holding a ``/`` is a path (relative
    ones taken from ``base``); anything else is a built-in profile's name.
    """
    if not text:
        raise ValueError("the profile must not be empty")
    if text.endswith(".toml") or os.sep in text:
        path = Path(text).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise ValueError(f"no such profile file: {path}")
        return path
    return builtin_profile_path(text)


def load_profile(path: Path) -> Mapping[str, Any]:
    """The profile's TOML, parsed with exact decimals; a clear error when it is not TOML."""
    import tomllib  # noqa: PLC0415

    try:
        return tomllib.loads(path.read_text("utf-8"), parse_float=Decimal)
    except OSError as exc:
        raise ValueError(f"cannot read profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"profile {path} is not valid TOML: {exc}") from None


def start_modbus_scale(
    profile: Path,
    *,
    tcp_port: int | None = None,
    rtu: bool = False,
    link: Path | None = None,
    units: Iterable[int] = (1,),
    weight: Decimal = Decimal(0),
) -> RunningTwin:
    """Modbus weight transmitters (one per unit id) on loopback TCP and/or an RTU pty."""
    from simulators.modbus_scale import ModbusScaleTwin  # noqa: PLC0415 - loaded when used

    data = load_profile(profile)
    try:
        twin = ModbusScaleTwin(
            data,
            tcp_port=tcp_port,
            rtu=rtu or link is not None,
            link=link,
            units=units,
            weight=weight,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"profile {profile} is incomplete or wrong: {exc!r}") from None
    tcp = twin.tcp_address
    tcp_url = None if tcp is None else f"tcp://{tcp[0]}:{tcp[1]}"
    extra = [("profile", str(profile))]
    if tcp_url is not None and twin.device_path is not None:
        # Both: the TCP address is the device line, the RTU bus an extra one.
        extra = [("rtu", twin.device_path), *([("link", str(link))] if link else []), *extra]
    device = tcp_url or twin.device_path
    assert device is not None  # the twin refuses to start with neither

    def for_unit(unit: int) -> Handler:
        return lambda text: modbus_command(twin, text, unit)

    return RunningTwin(
        "modbus scale",
        device,
        lambda text: modbus_command(twin, text),
        MODBUS_HELP,
        twin.close,
        link if tcp_url is None else None,
        extra,
        for_unit,
    )


# -- MQTT devices --------------------------------------------------------------------------

MQTT_SCANNER_HELP = """\
TEXT                 publish TEXT as one read (<GS> stands for the FNC1 separator, 0x1D)
!garbage             publish a payload that is neither UTF-8 nor JSON
!truncated TEXT      publish the first half of the JSON read of TEXT
!raw HEX             publish exactly these bytes
!drop-gs [on|off]    leave the GS separators out of reads (a misconfigured scanner)
!disconnect [SECONDS] [clean]  vanish from the broker (abruptly unless 'clean': last will)
!reconnect           come back now
!status              connected or not, reads published
!send TEXT           publish TEXT even if it looks like a command (e.g. 'help')
help | !help         this list
Any other line starting with '!' is refused, never published."""


def _mqtt_url(host: str, port: int, topic: str, login: BrokerLogin | None = None) -> str:
    scheme = "mqtts" if login is not None and login.uses_tls else "mqtt"
    return f"{scheme}://{host}:{port}/{topic}"


def mqtt_scanner_command(twin: MqttScannerTwin, text: str, symbology: str | None) -> str | None:
    """One stdin line of ``jxc sim mqtt-scanner``: a read, or a ``!`` control line."""
    word, _, rest = text.partition(" ")
    if text.strip() in ("help", "!help"):
        return MQTT_SCANNER_HELP
    if word == "!garbage":
        twin.send_garbage()
    elif word == "!truncated":
        twin.send_truncated(rest.replace("<GS>", "\x1d"), symbology)
    elif word == "!raw":
        twin.send_raw(bytes.fromhex(rest))
    elif word == "!drop-gs":
        twin.drop_gs(_on_off(rest.split()))
    elif word == "!disconnect":
        args = rest.split()
        clean = "clean" in args
        seconds = [a for a in args if a != "clean"]
        twin.disconnect(parse_seconds(seconds[0]) if seconds else None, abrupt=not clean)
    elif word == "!reconnect":
        twin.reconnect()
    elif word == "!status":
        return f"connected: {twin.connected}  published: {len(twin.sent)}  topic: {twin.topic}"
    elif word == "!send":
        twin.scan(rest.replace("<GS>", "\x1d"), symbology)
    elif word.startswith("!"):
        raise ValueError("unknown control line; try 'help' (or '!send TEXT' to send it)")
    else:
        twin.scan(text.replace("<GS>", "\x1d"), symbology)
    return None


def start_mqtt_scanner(
    device_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    topic: str | None = None,
    availability_topic: str | None = None,
    shape: PayloadShape = "json",
    symbology: str | None = None,
    connect_timeout: float = 5.0,
    login: BrokerLogin | None = None,
) -> RunningTwin:
    """A scanner publishing to an MQTT broker; waits (bounded) for the first connection."""
    from simulators.mqtt_devices import MqttScannerTwin  # noqa: PLC0415 - loaded when used

    twin = MqttScannerTwin(
        device_id,
        host=host,
        port=port,
        topic=topic,
        availability_topic=availability_topic,
        shape=shape,
        login=login,
    )
    extra = _wait_for_broker(twin.wait_connected(connect_timeout), host, port)
    return RunningTwin(
        "mqtt scanner",
        _mqtt_url(host, port, twin.topic, login),
        lambda text: mqtt_scanner_command(twin, text, symbology),
        MQTT_SCANNER_HELP,
        twin.close,
        extra=extra,
        keep_spaces=True,
    )


def _wait_for_broker(connected: bool, host: str, port: int) -> list[tuple[str, str]]:
    # Not fatal: a real device keeps trying, and so does the twin (what it publishes meanwhile
    # is kept and sent after the connection). Said on stdout so a script can tell.
    return [] if connected else [("warning", f"broker {host}:{port} not reachable yet; retrying")]


MQTT_SCALE_HELP = """\
weight VALUE [SETTLE]      put a gross load on the platform (SETTLE: seconds of swinging)
wobble SECONDS [AMPL]      swing for a while, then hold still
overload | underload       report that state until 'clear'
lie [on|off]               flag every reading stable, even while swinging
clock-offset SECONDS       stamp readings this far off (negative: stale readings)
timestamps on|off          send or leave out the ts field
silent [on|off]            stay connected but stop publishing (a hung indicator)
garbage [N] | truncated [N]  replace the next N readings by noise / their first half
reply-delay SECONDS        answer zero/tare commands this late
no-replies [on|off]        take commands and never answer them
unsupported [CMD ...]      answer these commands (zero, tare, clear_tare) 'unsupported'
disconnect [SECONDS] [clean]  vanish from the broker (abruptly unless 'clean')
reconnect                  come back now
clear                      back to a healthy device
status                     load, tare, connection, readings published
help                       this list"""


def mqtt_scale_command(twin: MqttScaleTwin, text: str) -> str | None:
    """One operator line for an MQTT scale twin (see :data:`MQTT_SCALE_HELP`)."""
    word, *args = text.split()

    def weight(args: list[str]) -> None:
        settle = parse_seconds(args[1], "SETTLE") if len(args) > 1 else 0.0
        twin.set_weight(parse_decimal(args[0], "the weight"), settle=settle)

    def wobble(args: list[str]) -> None:
        amplitude = parse_decimal(args[1], "the amplitude") if len(args) > 1 else None
        twin.wobble(parse_seconds(args[0]), amplitude)

    def timestamps(args: list[str]) -> None:
        if not args:
            raise ValueError("timestamps takes on or off")
        twin.send_timestamps(_on_off(args))

    def disconnect(args: list[str]) -> None:
        seconds = [a for a in args if a != "clean"]
        twin.disconnect(parse_seconds(seconds[0]) if seconds else None, abrupt="clean" not in args)

    actions: dict[str, Callable[[list[str]], None]] = {
        "weight": weight,
        "wobble": wobble,
        "overload": lambda _: twin.overload(),
        "underload": lambda _: twin.underload(),
        "lie": lambda a: twin.lie_about_stability(_on_off(a)),
        "clock-offset": lambda a: twin.set_clock_offset(float(parse_decimal(a[0], "the offset"))),
        "timestamps": timestamps,
        "silent": lambda a: twin.go_silent(_on_off(a)),
        "garbage": lambda a: twin.send_garbage(_count(a)),
        "truncated": lambda a: twin.send_truncated(_count(a)),
        "reply-delay": lambda a: twin.set_reply_delay(parse_seconds(a[0])),
        "no-replies": lambda a: twin.no_replies(_on_off(a)),
        "unsupported": lambda a: twin.unsupported(*a),
        "disconnect": disconnect,
        "reconnect": lambda _: twin.reconnect(),
        "clear": lambda _: twin.clear_faults(),
    }
    if word == "status":
        return (
            f"tare: {twin.tare_weight} {twin.unit}  connected: {twin.connected}  "
            f"published: {twin.published}  topic: {twin.topic}"
        )
    if word == "help":
        return MQTT_SCALE_HELP
    if word not in actions:
        raise ValueError("unknown command; try 'help'")
    actions[word](args)
    return None


def start_mqtt_scale(
    device_id: str,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    topics: Mapping[str, str | None] | None = None,
    weight: Decimal = Decimal(0),
    unit: str = "kg",
    decimals: int = 3,
    capacity: Decimal = Decimal(150),
    interval: float = 0.05,
    connect_timeout: float = 5.0,
    login: BrokerLogin | None = None,
) -> RunningTwin:
    """A scale publishing its weight to an MQTT broker and taking zero/tare commands.

    ``topics`` may set ``topic``, ``command_topic``, ``reply_topic`` and
    ``availability_topic`` (already expanded); the twin's defaults are the driver's.
    """
    from simulators.mqtt_devices import MqttScaleTwin  # noqa: PLC0415 - loaded when used

    given = dict(topics or {})
    twin = MqttScaleTwin(
        device_id,
        host=host,
        port=port,
        weight=weight,
        unit=unit,
        decimals=decimals,
        capacity=capacity,
        interval=interval,
        topic=given.get("topic"),
        command_topic=given.get("command_topic"),
        reply_topic=given.get("reply_topic"),
        availability_topic=given.get("availability_topic"),
        login=login,
    )
    extra = _wait_for_broker(twin.wait_connected(connect_timeout), host, port)
    if twin.command_topic:
        extra.insert(0, ("commands", twin.command_topic))
    return RunningTwin(
        "mqtt scale",
        _mqtt_url(host, port, twin.topic, login),
        lambda text: mqtt_scale_command(twin, text),
        MQTT_SCALE_HELP,
        twin.close,
        extra=extra,
    )
