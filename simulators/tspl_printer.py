"""A TSPL label printer twin (TSC, Gprinter and clones) on a TCP port, from the protocol notes.

It shares no code with ``device_drivers``: it reads TSPL as the programming manual
describes it, with its own line splitter, quoting (``\\["]`` for a double quote inside a
string) and status byte, so a driver that misquotes an item name produces a label here
whose texts are wrong or whose ``problems`` say why. The printer around the language (the
listener, the print engine, the faults, the kept labels) is the ZPL twin's
(:class:`~simulators.printer.ZplPrinterTwin`): a printer is a printer, whichever language
it reads.

What it models:

- Commands one per line (CR LF or LF). ``TEXT``, ``BARCODE`` and ``QRCODE`` draw into the
  image, ``CLS`` clears it, ``PRINT m[,n]`` queues it ``m x n`` times; ``SIZE``, ``GAP``,
  ``CODEPAGE``, ``DIRECTION`` and ``REM`` (a comment; ``REM jxc-job:<id>`` names the job)
  are taken. Anything else is a problem recorded on the next label, as is an unterminated
  string: a real printer would print something else or nothing.
- ``<ESC>!?`` anywhere in the stream, even mid-line, answers one status byte at once:
  bit 0 head open, 1 paper jam, 2 paper out, 3 ribbon out, 4 paused, 5 printing, 6 cover
  open, 7 other error (``0x00`` ready).
- Nothing prints before ``PRINT`` arrives; a connection dropped mid-job loses the job.
- Faults on command as for the ZPL twin, plus ``cover-open`` and ``paper-jam``.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field

from simulators.printer import PrintedField, ReceivedLabel, ZplPrinterTwin

__all__ = ["STATUS_QUERY", "TsplPrinterTwin", "TsplStreamParser", "parse_job", "split_params"]

STATUS_QUERY = b"\x1b!?"
_JOB_COMMENT = "jxc-job:"
_SETUP = frozenset({"SIZE", "GAP", "CODEPAGE", "DIRECTION", "REFERENCE", "DENSITY", "SPEED"})


def split_params(text: str) -> tuple[list[str], list[str]]:
    """A command's parameters, strings unquoted and ``\\["]`` decoded; and any problems.

    Blanks around a parameter are dropped; inside quotes they are the string's own.
    """
    params: list[str] = []
    problems: list[str] = []
    bare: list[str] = []
    quoted: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            value: list[str] = []
            while True:
                if end >= len(text):
                    problems.append(f"unterminated string in {text!r}")
                    break
                if text.startswith('\\["]', end):
                    value.append('"')
                    end += 4
                    continue
                if text[end] == '"':
                    break
                value.append(text[end])
                end += 1
            quoted = (quoted or "") + "".join(value)
            i = end + 1
            continue
        if char == ",":
            params.append(quoted if quoted is not None else "".join(bare).strip())
            bare, quoted = [], None
        else:
            bare.append(char)
        i += 1
    params.append(quoted if quoted is not None else "".join(bare).strip())
    return params, problems


@dataclass
class _Job:
    lines: list[bytes] = field(default_factory=list)
    job_id: str | None = None
    comments: list[str] = field(default_factory=list)
    fields: list[PrintedField] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def take(self, line: bytes) -> ReceivedLabel | None:
        """One command line; the label when it was ``PRINT``."""
        self.lines.append(line)
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return None
        word, _, rest = text.partition(" ")
        word = word.upper()
        if word == "REM":
            comment = rest.strip()
            self.comments.append(comment)
            if comment.startswith(_JOB_COMMENT):
                self.job_id = comment.removeprefix(_JOB_COMMENT)
            return None
        params, problems = split_params(rest)
        self.problems += problems
        if word == "CLS":
            self.fields.clear()
        elif word in _SETUP:
            pass
        elif word == "TEXT":
            self._draw("text", word, params, 7, content=False)
        elif word == "BARCODE":
            kind = "code128" if len(params) > 2 and params[2] == "128" else "other"
            self._draw(kind, word, params, 9, content=True)
        elif word == "QRCODE":
            self._draw("qr", word, params, 7, content=True)
        elif word == "PRINT":
            return self._print(params)
        else:
            self.problems.append(f"unknown command {word!r}")
        return None

    def _draw(self, kind: str, word: str, params: list[str], count: int, *, content: bool) -> None:
        if len(params) != count:
            self.problems.append(f"{word} takes {count} parameters, got {len(params)}")
            return
        x, y = _number(params[0]), _number(params[1])
        data = params[-1]
        self.fields.append(
            PrintedField(kind, word, x, y, data, data if content else None)  # type: ignore[arg-type]
        )

    def _print(self, params: list[str]) -> ReceivedLabel:
        sets = _number(params[0]) if params and params[0] else None
        copies = _number(params[1]) if len(params) > 1 else 1
        if sets is None or copies is None or sets < 1 or copies < 1:
            self.problems.append(f"PRINT needs positive counts, got {params}")
        quantity = max(sets or 0, 0) * max(copies or 0, 0)
        return ReceivedLabel(
            raw=b"\r\n".join(self.lines) + b"\r\n",
            job_id=self.job_id,
            quantity=quantity,
            fields=tuple(self.fields),
            comments=tuple(self.comments),
            problems=tuple(self.problems),
        )


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class TsplStreamParser:
    """Splits one connection's bytes into status queries and complete jobs, in order."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._job = _Job()

    @property
    def in_job(self) -> bool:
        return bool(self._job.lines or self._buffer.strip())

    def feed(self, data: bytes) -> list[ReceivedLabel | None]:
        """Labels completed by ``data``, and ``None`` for each status query, in order."""
        self._buffer += data
        events: list[ReceivedLabel | None] = []
        while True:
            escape = self._buffer.find(b"\x1b")
            newline = self._buffer.find(b"\n")
            if escape >= 0 and (newline < 0 or escape < newline):
                if len(self._buffer) < escape + 3:
                    return events  # the rest of the immediate command is still on its way
                command = bytes(self._buffer[escape : escape + 3])
                del self._buffer[escape : escape + 3]
                if command == STATUS_QUERY:
                    events.append(None)
                continue
            if newline < 0:
                return events
            line = bytes(self._buffer[:newline]).rstrip(b"\r")
            del self._buffer[: newline + 1]
            label = self._job.take(line)
            if label is not None:
                events.append(label)
                self._job = _Job()


def parse_job(raw: bytes) -> list[ReceivedLabel]:
    """Every label a complete TSPL stream prints (status queries ignored)."""
    return [event for event in TsplStreamParser().feed(raw) if event is not None]


class TsplPrinterTwin(ZplPrinterTwin):
    """One simulated TSPL printer listening on ``host:port`` (port 0 picks a free one).

    The faults, the print engine and :meth:`labels` are the ZPL twin's; the language and the
    status byte are TSPL's. ``silent_when_faulted`` has no TSPL meaning (the byte always
    answers) and is refused.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kwargs: object) -> None:
        if kwargs.get("silent_when_faulted"):
            raise ValueError("a TSPL printer always answers its status byte")
        self._cover_open = False
        self._paper_jam = False
        super().__init__(host, port, label_counter=False, **kwargs)  # type: ignore[arg-type]

    def set_cover_open(self, on: bool = True) -> None:
        self._set("_cover_open", on)

    def set_paper_jam(self, on: bool = True) -> None:
        self._set("_paper_jam", on)

    def status_byte(self) -> int:
        """The answer to ``<ESC>!?`` for the current state."""
        with self._cond:
            printing = self._labels_remaining > 0 or (bool(self._pending) and self._printable())
            bits = (
                self._head_open,
                self._paper_jam,
                self._paper_out,
                self._ribbon_out,
                self._paused,
                printing,
                self._cover_open,
                False,
            )
        return sum(1 << n for n, on in enumerate(bits) if on)

    def host_status(self) -> bytes:
        return bytes([self.status_byte()])

    def describe(self) -> str:
        text = super().describe()
        with self._cond:
            extra = [
                n
                for n, on in (("cover-open", self._cover_open), ("paper-jam", self._paper_jam))
                if on
            ]
        if not extra:
            return text
        flags = ", ".join(extra)
        if text.startswith("ready; "):
            return f"{flags}; {text.removeprefix('ready; ')}"
        return f"{flags}, {text}"

    def _printable(self) -> bool:
        return super()._printable() and not (self._cover_open or self._paper_jam)

    def _serve(self, sock: socket.socket) -> None:
        parser = TsplStreamParser()
        try:
            while True:
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk or not self._take_tspl(sock, parser, chunk):
                    return
        finally:
            with self._cond:
                _close(sock)

    def _take_tspl(self, sock: socket.socket, parser: TsplStreamParser, chunk: bytes) -> bool:
        """Process one read; ``False`` when the connection is to be dropped."""
        with self._cond:
            cut = self._drop_plan == "mid_job" and b"PRINT" in chunk
            if cut:
                self._drop_plan = None
        if cut:
            parser.feed(chunk[: chunk.index(b"PRINT")])
            return False
        for event in parser.feed(chunk):
            if event is None:
                self._answer_status(sock)
                continue
            with self._cond:
                self._received.append(event)
                self._pending.append(event)
                self._cond.notify_all()
                if self._drop_plan == "after_job":
                    self._drop_plan = None
                    return False
        return True

    def _answer_status(self, sock: socket.socket) -> None:
        with self._cond:
            if self._status_muted:
                return
            delay = self._reply_delay
        if delay:
            time.sleep(delay)
        answer = self.host_status()
        try:
            sock.sendall(answer)
        except OSError:
            return

    def _keep(self, label: ReceivedLabel, number: int) -> None:
        if self.store is None:
            return
        name = f"{number:05d}-{label.job_id or 'no-job'}.tspl"
        (self.store / name).write_bytes(label.raw)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
