"""A Zebra ZPL II label printer twin on a TCP port, written from the protocol notes.

It deliberately shares no code with ``device_drivers``: it reads ZPL the way the
programming guide describes it (its own tokenizer, ``^FH`` decoding, Code 128 invocation
codes, Data Matrix escapes), so a driver or label builder that misreads the spec produces
a label here whose fields are wrong or whose ``problems`` say why.

What it models, and how:

- One input stream per connection: ``^XA … ^XZ`` formats, ``~`` control commands (which
  run the moment they arrive, even inside a format) and Set-Get-Do lines (``! U1 getvar``).
  A format cut off by a dropped connection is discarded, as it never got its ``^XZ``.
- A receive buffer of formats and a print engine thread that prints them one batch
  (``^PQ``) at a time, only while the printer is not paused and has paper, ribbon and a
  closed head. The lifetime label counter moves by one per label printed.
- ``~HS`` answers three ``STX … ETX CR LF`` strings reflecting all of that; ``~HI`` answers
  the model; ``odometer.total_label_count`` answers the counter as ``"N"``.
- Faults on command: paper out, head open, ribbon out, pause, no reply to ``~HS`` (always,
  or like current firmware only while media/ribbon is out or the head is open), dropping
  the connection in the middle of the next format or right after it, slow replies and
  slow printing.

Every printed label is kept (``labels()``) and, given a ``store`` folder, written there.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simulators.closing import ClosedOnExit

__all__ = [
    "DropMode",
    "PrintedField",
    "ReceivedLabel",
    "ZplPrinterTwin",
    "ZplStreamParser",
    "decode_code128",
    "parse_format",
    "run_command",
]

GS = "\x1d"
"""FNC1 inside a symbol, as a scanner would transmit it."""

DropMode = Literal["mid_job", "after_job"]

_STX, _ETX, _CRLF = b"\x02", b"\x03", b"\r\n"
_SGD_GETVAR = re.compile(rb'!\s*U1\s+getvar\s+"([^"]*)"')
_MAX_SGD_LINE = 4096


# -- what a format says -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrintedField:
    """One ``^FD … ^FS`` field as the printer would render it.

    ``data`` is the field data after ``^FH`` hex decoding and character-set decoding, i.e.
    what the font or symbology receives. ``content`` is what a scanner would read from a
    symbol (FNC1 separators as GS, the leading FNC1 dropped and ``gs1`` set); ``None`` for
    text.
    """

    kind: Literal["text", "code128", "datamatrix", "qr", "other"]
    command: str
    x: int | None
    y: int | None
    data: str
    content: str | None = None
    gs1: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedLabel:
    """One complete format, with what the twin made of it.

    ``problems`` lists what a real printer would have printed wrongly or not at all (an
    unpaired digit in Code 128 subset C is silently dropped by the printer, for example),
    so a test can insist on none.
    """

    raw: bytes
    job_id: str | None
    quantity: int
    fields: tuple[PrintedField, ...]
    comments: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def texts(self) -> list[str]:
        return [f.data for f in self.fields if f.kind == "text"]

    @property
    def symbols(self) -> list[PrintedField]:
        return [f for f in self.fields if f.kind != "text"]


def parse_format(raw: bytes) -> ReceivedLabel:
    """Read one ``^XA … ^XZ`` format into fields; never raises, records problems instead."""
    interpreter = _FormatInterpreter()
    for name, params in _commands(raw):
        interpreter.command(name, params)
    return interpreter.label(raw)


def _commands(raw: bytes) -> Iterable[tuple[str, bytes]]:
    # Every command is a caret and two characters; its parameters run to the next caret.
    # Line breaks between (and inside) commands mean nothing to ZPL.
    body = raw.replace(b"\r", b"").replace(b"\n", b"")
    for chunk in body.split(b"^")[1:]:
        yield chunk[:2].decode("latin-1").upper(), chunk[2:]


class _FormatInterpreter:
    def __init__(self) -> None:
        self.fields: list[PrintedField] = []
        self.comments: list[str] = []
        self.problems: list[str] = []
        self.quantity = 1
        self.utf8 = False
        self._reset_field()

    def _reset_field(self) -> None:
        self.x: int | None = None
        self.y: int | None = None
        self.font: str | None = None
        self.symbology: tuple[str, bytes] | None = None
        self.hex_indicator: bytes | None = None
        self.data: bytes | None = None

    def command(self, name: str, params: bytes) -> None:
        if name in ("FO", "FT"):
            self.x, self.y = _two_ints(params)
        elif name.startswith("A"):
            self.font = name + params.decode("latin-1")
        elif name in ("BC", "BX", "BQ") or (name.startswith("B") and name not in ("BY",)):
            self.symbology = (name, params)
        elif name == "FH":
            self.hex_indicator = params[:1] or b"_"
        elif name == "FD":
            self.data = params
        elif name == "FS":
            if self.data is not None:
                self._emit()
            self._reset_field()
        elif name == "FX":
            self.comments.append(params.decode("latin-1"))
        elif name == "CI":
            self.utf8 = params.split(b",")[0] == b"28"
        elif name == "PQ":
            first = params.split(b",")[0]
            self.quantity = int(first) if first.isdigit() else 1
        elif name == "XA" and (self.fields or self.comments):
            self.problems.append("^XA inside a format")

    def label(self, raw: bytes) -> ReceivedLabel:
        if self.data is not None:
            self.problems.append("field data not closed by ^FS")
        job_ids = [c.removeprefix("jxc-job:") for c in self.comments if c.startswith("jxc-job:")]
        return ReceivedLabel(
            raw=raw,
            job_id=job_ids[0] if job_ids else None,
            quantity=self.quantity,
            fields=tuple(self.fields),
            comments=tuple(self.comments),
            problems=tuple(self.problems),
        )

    def _emit(self) -> None:
        assert self.data is not None
        raw = self.data
        if self.hex_indicator is not None:
            raw = self._unhex(raw, self.hex_indicator)
        try:
            data = raw.decode("utf-8") if self.utf8 else raw.decode("latin-1")
        except UnicodeDecodeError:
            self.problems.append(f"field data is not UTF-8: {raw!r}")
            data = raw.decode("utf-8", errors="replace")
        if self.symbology is None:
            self.fields.append(PrintedField("text", self.font or "", self.x, self.y, data))
            return
        name, params = self.symbology
        command = name + params.decode("latin-1")
        kind: Literal["code128", "datamatrix", "qr", "other"]
        if name == "BC":
            kind = "code128"
            content, problems = _code128_content(params, data)
        elif name == "BX":
            kind = "datamatrix"
            content, problems = _datamatrix_content(params, data)
        elif name == "BQ":
            kind = "qr"
            content, problems = _qr_content(data)
        else:
            kind, content, problems = "other", data, []
        self.problems.extend(f"{command}: {p}" for p in problems)
        gs1 = content.startswith(GS)
        if gs1:
            content = content[1:]
        self.fields.append(PrintedField(kind, command, self.x, self.y, data, content, gs1))

    def _unhex(self, raw: bytes, indicator: bytes) -> bytes:
        out = bytearray()
        i = 0
        while i < len(raw):
            if raw[i : i + 1] == indicator:
                pair = raw[i + 1 : i + 3]
                try:
                    out.append(int(pair, 16))
                except ValueError:
                    self.problems.append(f"bad ^FH escape {raw[i : i + 3]!r}")
                    out += raw[i : i + 3]
                i += 3
                continue
            out.append(raw[i])
            i += 1
        return bytes(out)


def _two_ints(params: bytes) -> tuple[int | None, int | None]:
    parts = params.split(b",")
    values = [int(p) if p.strip().isdigit() else None for p in parts[:2]]
    values += [None] * (2 - len(values))
    return values[0], values[1]


def _code128_content(params: bytes, data: str) -> tuple[str, list[str]]:
    parts = params.decode("latin-1").split(",")
    mode = parts[5] if len(parts) > 5 and parts[5] else "N"
    if mode != "N":
        return data, [f"mode {mode} is not modelled"]
    return decode_code128(data)


def decode_code128(data: str) -> tuple[str, list[str]]:
    """What a scanner reads from ``^BC`` mode N field data, and what went wrong.

    Invocation codes per the programming guide: ``>9``/``>:``/``>;`` start subset A/B/C
    (B when none is given), ``>5`` code C, ``>6`` code B, ``>7`` code A, ``>8`` FNC1. In
    subset C data comes in digit pairs; the printer drops an unpaired digit, we report it.
    Subset A and the escapes for ``^ > ~`` are not modelled and reported as problems.
    """
    out: list[str] = []
    problems: list[str] = []
    subset = "B"
    i = 0
    starts = {">9": "A", ">:": "B", ">;": "C"}
    if data[:2] in starts:
        subset = starts[data[:2]]
        i = 2
    switches = {"5": "C", "6": "B", "7": "A"}
    while i < len(data):
        char = data[i]
        if char == ">":
            code = data[i + 1 : i + 2]
            if code == "8":
                out.append(GS)
            elif code in switches and switches[code] != subset:
                subset = switches[code]
            else:
                problems.append(f"invocation >{code} in subset {subset} is not modelled")
            i += 2
            continue
        if subset == "C":
            pair = data[i : i + 2]
            if len(pair) == 2 and pair.isdigit():
                out.append(pair)
                i += 2
            else:
                problems.append(f"{pair!r} is not a digit pair in subset C; the printer drops it")
                i += 1
            continue
        if subset == "A":
            problems.append("subset A is not modelled")
        elif not " " <= char <= "~":
            problems.append(f"{char!r} cannot be encoded in subset B")
        out.append(char)
        i += 1
    if not out:
        problems.append("empty symbol")
    return "".join(out), problems


def _datamatrix_content(params: bytes, data: str) -> tuple[str, list[str]]:
    parts = params.decode("latin-1").split(",")
    quality = parts[2] if len(parts) > 2 else ""
    if quality != "200":
        return data, [f"quality {quality or '0'} is not modelled (use 200)"]
    escape = parts[6][:1] if len(parts) > 6 and parts[6] else "~"
    out: list[str] = []
    problems: list[str] = []
    i = 0
    while i < len(data):
        char = data[i]
        if char != escape:
            out.append(char)
            i += 1
            continue
        code = data[i + 1 : i + 2]
        if code == "1":
            out.append(GS)
        elif code == escape:
            out.append(escape)
        else:
            problems.append(f"escape {escape}{code} is not modelled")
        i += 2
    return "".join(out), problems


def _qr_content(data: str) -> tuple[str, list[str]]:
    match = re.fullmatch(r"([HQML])([AM]),(.*)", data, flags=re.DOTALL)
    if match is None:
        return data, ["QR field data must start with error correction and input mode, e.g. QA,"]
    if match.group(2) == "M":
        return match.group(3), ["manual QR input mode is not modelled"]
    return match.group(3), []


# -- the input stream -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Format:
    raw: bytes


@dataclass(frozen=True, slots=True)
class _Control:
    name: str


@dataclass(frozen=True, slots=True)
class _Sgd:
    line: bytes


_StreamEvent = _Format | _Control | _Sgd


class ZplStreamParser:
    """Splits what arrives on one connection into formats, control commands and SGD lines."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._format: bytearray | None = None

    @property
    def in_format(self) -> bool:
        """Inside ``^XA`` without its ``^XZ`` yet: the ``~HS`` partial-format flag."""
        return self._format is not None

    def feed(self, data: bytes) -> list[_StreamEvent]:
        self._buffer += data
        events: list[_StreamEvent] = []
        while self._step(events):
            pass
        return events

    def _step(self, events: list[_StreamEvent]) -> bool:
        """Take one thing off the buffer; ``False`` when more bytes are needed."""
        if self._format is not None:
            return self._step_in_format(self._format, events)
        return self._step_outside(events)

    def _step_in_format(self, format_: bytearray, events: list[_StreamEvent]) -> bool:
        buffer = self._buffer
        tilde = buffer.find(b"~")
        end = buffer.find(b"^XZ")
        if tilde >= 0 and (end < 0 or tilde < end):
            # A control command runs the moment it arrives, even in the middle of a format.
            format_ += buffer[:tilde]
            del buffer[:tilde]
            if len(buffer) < 3:
                return False
            events.append(_Control(buffer[1:3].decode("latin-1").upper()))
            del buffer[:3]
            return True
        if end >= 0:
            format_ += buffer[: end + 3]
            del buffer[: end + 3]
            events.append(_Format(bytes(format_)))
            self._format = None
            return True
        settled = max(len(buffer) - 2, 0)  # keep a "^X" that may be split from its "Z"
        format_ += buffer[:settled]
        del buffer[:settled]
        return False

    def _step_outside(self, events: list[_StreamEvent]) -> bool:
        buffer = self._buffer
        starts = [i for i in (buffer.find(b"^"), buffer.find(b"~"), buffer.find(b"!")) if i >= 0]
        del buffer[: min(starts, default=len(buffer))]
        lead = bytes(buffer[:1])
        if lead == b"!":
            newline = buffer.find(b"\n")
            if newline >= 0:
                events.append(_Sgd(bytes(buffer[: newline + 1])))
                del buffer[: newline + 1]
            elif len(buffer) > _MAX_SGD_LINE:
                buffer.clear()
            return newline >= 0
        if len(buffer) < 3:
            return False
        if lead == b"~":
            events.append(_Control(buffer[1:3].decode("latin-1").upper()))
            del buffer[:3]
        elif buffer[:3] == b"^XA":
            self._format = bytearray(b"^XA")
            del buffer[:3]
        else:
            del buffer[:1]  # a format command outside a format means nothing
        return True


# -- the printer ------------------------------------------------------------------------


class ZplPrinterTwin(ClosedOnExit):
    """One simulated Zebra printer listening on ``host:port`` (port 0 picks a free one).

    All methods are safe from any thread. Close it (or use ``with``) to stop its threads.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store: Path | None = None,
        model: str = "ZT410-203dpi",
        firmware: str = "V75.20.01Z",
        label_counter: bool = True,
        silent_when_faulted: bool = False,
        odometer: int = 0,
    ) -> None:
        self.store = store
        self.model = model
        self.firmware = firmware
        self.label_counter = label_counter
        self._cond = threading.Condition()
        self._closed = False
        self._paper_out = False
        self._head_open = False
        self._ribbon_out = False
        self._paused = False
        self._status_muted = False
        self._silent_when_faulted = silent_when_faulted
        self._reply_delay = 0.0
        self._print_delay = 0.0
        self._drop_plan: DropMode | None = None
        self._pending: deque[ReceivedLabel] = deque()
        self._labels_remaining = 0
        self._received: list[ReceivedLabel] = []
        self._printed: list[ReceivedLabel] = []
        self._odometer = odometer
        self._partial_connections = 0
        self._connections: dict[socket.socket, threading.Thread] = {}
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Reuse the port at once, so a test can restart the printer where it was.
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(4)
        except BaseException:
            self._listener.close()
            raise
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="zpl-twin-accept", daemon=True
        )
        self._engine = threading.Thread(
            target=self._print_loop, name="zpl-twin-engine", daemon=True
        )
        self._acceptor.start()
        self._engine.start()

    @property
    def port(self) -> int:
        return self.address[1]

    # -- what it holds ----------------------------------------------------------------

    def labels(self) -> list[ReceivedLabel]:
        """Every format printed so far (one entry per format, whatever its ``^PQ``)."""
        with self._cond:
            return list(self._printed)

    def received(self) -> list[ReceivedLabel]:
        """Every complete format received, printed or still waiting."""
        with self._cond:
            return list(self._received)

    def job_ids(self) -> list[str | None]:
        return [label.job_id for label in self.labels()]

    @property
    def odometer(self) -> int:
        with self._cond:
            return self._odometer

    def wait_for_labels(self, count: int, timeout: float = 5.0) -> list[ReceivedLabel]:
        """Block until ``count`` labels are printed (or the timeout); return them all."""
        give_up_at = time.monotonic() + timeout
        with self._cond:
            while len(self._printed) < count:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return list(self._printed)

    # -- faults -----------------------------------------------------------------------

    def set_paper_out(self, on: bool = True) -> None:
        self._set("_paper_out", on)

    def set_head_open(self, on: bool = True) -> None:
        self._set("_head_open", on)

    def set_ribbon_out(self, on: bool = True) -> None:
        self._set("_ribbon_out", on)

    def pause(self) -> None:
        self._set("_paused", True)

    def resume(self) -> None:
        self._set("_paused", False)

    def mute_status(self, on: bool = True) -> None:
        """Stop (or resume) answering ``~HS`` at all."""
        self._set("_status_muted", on)

    def drop_next(self, mode: DropMode = "mid_job") -> None:
        """Cut the connection in the middle of the next format, or right after it arrives."""
        with self._cond:
            self._drop_plan = mode

    def set_slow(self, reply_delay: float = 0.0, print_delay: float = 0.0) -> None:
        """Delay every status reply, and every printed label, by these many seconds."""
        with self._cond:
            self._reply_delay = reply_delay
            self._print_delay = print_delay
            self._cond.notify_all()

    def host_status(self) -> bytes:
        """The three ``~HS`` strings for the current state (whether or not it would answer)."""
        with self._cond:
            first = (
                f"030,{self._paper_out:d},{self._paused:d},1218,{len(self._pending):03d},"
                f"0,0,{self._partial_connections > 0:d},000,0,0,0"
            )
            second = (
                f"001,0,{self._head_open:d},{self._ribbon_out:d},1,2,6,0,"
                f"{self._labels_remaining:08d},1,000"
            )
            third = "1234,0"
        return b"".join(_STX + line.encode() + _ETX + _CRLF for line in (first, second, third))

    def describe(self) -> str:
        with self._cond:
            flags = [
                name
                for name, on in (
                    ("paper-out", self._paper_out),
                    ("head-open", self._head_open),
                    ("ribbon-out", self._ribbon_out),
                    ("paused", self._paused),
                    ("status-muted", self._status_muted),
                )
                if on
            ]
            return (
                f"{', '.join(flags) or 'ready'}; {len(self._pending)} waiting, "
                f"{len(self._printed)} printed, odometer {self._odometer}"
            )

    def close(self) -> None:
        """Stop listening, drop every connection, stop printing; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            for sock in self._connections:
                _hang_up(sock)
            self._cond.notify_all()
        self._acceptor.join()
        self._listener.close()
        for thread in list(self._connections.values()):
            thread.join()
        self._engine.join()

    # -- inside -----------------------------------------------------------------------

    def _set(self, name: str, value: bool) -> None:
        with self._cond:
            setattr(self, name, value)
            self._cond.notify_all()

    def _printable(self) -> bool:
        return not (self._paused or self._paper_out or self._head_open or self._ribbon_out)

    def _answers_status(self) -> bool:
        with self._cond:
            if self._status_muted:
                return False
            faulted = self._paper_out or self._head_open or self._ribbon_out
            return not (self._silent_when_faulted and faulted)

    def _accept_loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            try:
                sock, _peer = self._listener.accept()
            except OSError:
                continue
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="zpl-twin-conn", daemon=True
            )
            with self._cond:
                if self._closed:
                    sock.close()
                    return
                # Finished connections are forgotten here; live ones are joined by close().
                for old in [s for s, t in self._connections.items() if not t.is_alive()]:
                    del self._connections[old]
                self._connections[sock] = thread
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        parser = ZplStreamParser()
        try:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                if not self._take(sock, parser, chunk):
                    return
        finally:
            # Under the lock, so close() never shuts down a socket closed under its feet.
            with self._cond:
                if parser.in_format:
                    self._partial_connections -= 1
                _hang_up(sock)
                sock.close()

    def _take(self, sock: socket.socket, parser: ZplStreamParser, chunk: bytes) -> bool:
        """Process one read; ``False`` when the connection is to be dropped."""
        with self._cond:
            cut = self._drop_plan == "mid_job" and (parser.in_format or b"^XA" in chunk)
            if cut:
                self._drop_plan = None
        if cut:
            self._feed(parser, chunk[: _midpoint(chunk, parser.in_format)])
            return False
        for event in self._feed(parser, chunk):
            if isinstance(event, _Format):
                self._accept_format(event.raw)
                with self._cond:
                    if self._drop_plan == "after_job":
                        self._drop_plan = None
                        return False
            elif isinstance(event, _Control):
                self._control(sock, event.name)
            else:
                self._sgd(sock, event.line)
        return True

    def _feed(self, parser: ZplStreamParser, data: bytes) -> list[_StreamEvent]:
        was_partial = parser.in_format
        events = parser.feed(data)
        with self._cond:
            self._partial_connections += int(parser.in_format) - int(was_partial)
        return events

    def _accept_format(self, raw: bytes) -> None:
        label = parse_format(raw)
        with self._cond:
            self._received.append(label)
            self._pending.append(label)
            self._cond.notify_all()

    def _control(self, sock: socket.socket, name: str) -> None:
        if name == "HS":
            if not self._answers_status():
                return
            with self._cond:
                delay = self._reply_delay
            if delay:
                time.sleep(delay)
            _send(sock, self.host_status())
        elif name == "HI":
            _send(sock, _STX + f"{self.model},{self.firmware},8,8176KB".encode() + _ETX + _CRLF)
        elif name == "JA":
            with self._cond:
                self._pending.clear()

    def _sgd(self, sock: socket.socket, line: bytes) -> None:
        match = _SGD_GETVAR.match(line)
        if match is None:
            return
        if match.group(1) == b"odometer.total_label_count" and self.label_counter:
            _send(sock, f'"{self.odometer}"'.encode())
        else:
            _send(sock, b'"?"')

    def _print_loop(self) -> None:
        with self._cond:
            while not self._closed:
                if not (self._pending and self._printable()):
                    self._cond.wait()
                    continue
                label = self._pending.popleft()
                self._labels_remaining = label.quantity
                while self._labels_remaining and not self._closed:
                    if not self._printable():
                        self._cond.wait()
                        continue
                    if self._print_delay and not self._feed_one_label():
                        continue
                    self._labels_remaining -= 1
                    self._odometer += 1
                if self._labels_remaining == 0:
                    self._printed.append(label)
                    self._keep(label, len(self._printed))
                    self._cond.notify_all()

    def _feed_one_label(self) -> bool:
        """Take ``print_delay`` to print a label (lock held); ``False`` if interrupted."""
        done_at = time.monotonic() + self._print_delay
        while not self._closed and (remaining := done_at - time.monotonic()) > 0:
            self._cond.wait(remaining)
            if not self._printable():
                return False
        return not self._closed

    def _keep(self, label: ReceivedLabel, number: int) -> None:
        if self.store is None:
            return
        name = f"{number:05d}-{label.job_id or 'no-job'}.zpl"
        (self.store / name).write_bytes(label.raw)


def _midpoint(chunk: bytes, in_format: bool) -> int:
    # Somewhere strictly inside the format, so it can never be complete.
    start = 0 if in_format else chunk.find(b"^XA") + 3
    end = chunk.find(b"^XZ", start)
    if end < 0:
        end = len(chunk)
    return start + max((end - start) // 2, 0)


def _send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# -- operator commands ------------------------------------------------------------------

_HELP = (
    "commands: paper-out, paper-in, head-open, head-close, ribbon-out, ribbon-in, pause, "
    "resume, mute-status, unmute-status, drop-next [mid-job|after-job], "
    "slow REPLY_S [PRINT_S], list, status, help"
)


def run_command(twin: ZplPrinterTwin, command: str) -> str:
    """Apply one stdin command to ``twin``; the answer is a line for the operator."""
    word, *args = command.split()
    toggles = {
        "paper-out": (twin.set_paper_out, True),
        "paper-in": (twin.set_paper_out, False),
        "head-open": (twin.set_head_open, True),
        "head-close": (twin.set_head_open, False),
        "ribbon-out": (twin.set_ribbon_out, True),
        "ribbon-in": (twin.set_ribbon_out, False),
        "mute-status": (twin.mute_status, True),
        "unmute-status": (twin.mute_status, False),
    }
    if word in toggles:
        setter, value = toggles[word]
        setter(value)
    elif word == "pause":
        twin.pause()
    elif word == "resume":
        twin.resume()
    elif word == "drop-next":
        mode = args[0].replace("-", "_") if args else "mid_job"
        if mode not in ("mid_job", "after_job"):
            return f"unknown drop mode {args[0]!r}; use mid-job or after-job"
        twin.drop_next("mid_job" if mode == "mid_job" else "after_job")
    elif word == "slow":
        try:
            delays = [float(a) for a in args[:2]]
        except ValueError:
            return "slow takes seconds: slow REPLY_S [PRINT_S]"
        twin.set_slow(*delays)
    elif word == "list":
        labels = twin.labels()
        lines = [f"{len(labels)} printed"]
        lines += [
            f"{n:>4} job={label.job_id} qty={label.quantity} texts={label.texts}"
            for n, label in enumerate(labels, 1)
        ]
        return "\n".join(lines)
    elif word == "help":
        return _HELP
    elif word != "status":
        return f"unknown command {word!r}; {_HELP}"
    return twin.describe()
