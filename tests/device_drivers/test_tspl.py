"""TSPL: the job builder's quoting, the status byte, and the driver against the TSPL twin."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.errors import RejectedInputError
from device_drivers.printers import ItemLabel, LabelDataError, LabelJob, item_label_layout
from device_drivers.printers.tspl import (
    STATUS_REQUEST,
    build_tspl,
    parse_status_byte,
    quote,
)
from device_drivers.printers.tspl_printer import TsplPrinter, TsplPrinterConfig
from device_drivers.printers.zpl import Label, Text
from device_drivers.transport import loopback_pair
from simulators.pty_bridge import PtyBridge
from simulators.tspl_printer import TsplPrinterTwin, parse_job, split_params

T = TypeVar("T")

# Printable text a name may hold: anything but control characters (ItemLabel refuses those).
NAMES = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
    min_size=1,
    max_size=60,
).filter(lambda s: "\\[" not in s)


def mug(**overrides: object) -> ItemLabel:
    fields: dict[str, object] = {
        "item_code": "MUG-01",
        "quantity": Decimal("12"),
        "unit": "EA",
        "site_id": "S1",
        "lot": "L7",
        "expiry": datetime.date(2027, 1, 31),
        "location": "DOCK-1",
        "seq": 5,
        "reference": "jxc:S1:5:abc",
    }
    fields.update(overrides)
    return ItemLabel(**fields)  # type: ignore[arg-type]


def eventually(probe: Callable[[], T | None], *, within: float = 10.0) -> T:
    end = time.monotonic() + within
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {within} s")


# -- the builder -------------------------------------------------------------------------


def test_a_job_is_set_up_drawn_and_printed_once() -> None:
    job = build_tspl(item_label_layout(mug()), job_id="job-1").decode()
    lines = job.split("\r\n")
    assert lines[0] == "REM jxc-job:job-1"
    assert lines[1] == "SIZE 101.5 mm,76.125 mm"
    assert "CLS" in lines
    assert lines[-2] == "PRINT 1"
    assert lines[-1] == ""
    assert 'BARCODE 30,225,"128",90,1,0,2,2,"MUG-01"' in lines
    assert 'QRCODE 620,20,M,4,A,0,"jxc:S1:5:abc"' in lines


def test_quotes_are_escaped_and_line_breaks_refused() -> None:
    assert quote('12" pipe') == '"12\\["] pipe"'
    with pytest.raises(LabelDataError, match="control characters"):
        quote('x"\r\nPRINT 99\r\n')
    with pytest.raises(LabelDataError, match="TSPL escape"):
        quote("a\\[R]b")


@given(NAMES)
def test_any_item_name_comes_out_as_one_text_and_nothing_else(name: str) -> None:
    """No name, however hostile, adds a command, a field or a copy: the twin reads it back."""
    layout = Label((Text(30, 20, name, 30),), width_dots=812, length_dots=609)
    [label] = parse_job(build_tspl(layout, job_id="job-1"))
    assert label.problems == ()
    assert label.texts == [name]
    assert label.quantity == 1
    assert label.job_id == "job-1"


@given(st.lists(NAMES, min_size=1, max_size=4))
def test_parameters_round_trip_through_quoting(values: list[str]) -> None:
    params, problems = split_params(",".join(quote(v) for v in values))
    assert problems == []
    assert params == values


def test_a_label_the_builder_cannot_draw_is_refused_before_sending() -> None:
    with pytest.raises(LabelDataError):
        build_tspl(item_label_layout(mug()), quantity=0)


@pytest.mark.parametrize(
    ("byte", "problems", "printing"),
    [
        (0x00, [], False),
        (0x20, [], True),
        (0x01, ["head open"], False),
        (0x04, ["paper out"], False),
        (0x0C, ["paper out", "ribbon out"], False),
        (0x10, ["paused"], False),
        (0x40, ["cover open"], False),
        (0x82, ["paper jam", "printer error"], False),
    ],
)
def test_the_status_byte_bit_by_bit(byte: int, problems: list[str], printing: bool) -> None:
    status = parse_status_byte(bytes([byte]))
    assert status.problems == problems
    assert status.printing is printing


def test_a_status_reply_of_another_length_is_refused() -> None:
    with pytest.raises(RejectedInputError):
        parse_status_byte(b"\x00\x00")


# -- the driver --------------------------------------------------------------------------


def config(**overrides: object) -> TsplPrinterConfig:
    settings: dict[str, object] = {
        "device_id": "tspl-1",
        "reply_timeout": 0.5,
        "job_timeout": 3.0,
        "poll_interval": 0.03,
        "settle_time": 0.1,
    }
    settings.update(overrides)
    return TsplPrinterConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def twin() -> Iterator[TsplPrinterTwin]:
    with TsplPrinterTwin() as printer:
        yield printer


def test_driver_prints_over_tcp_once_per_job_id(twin: TsplPrinterTwin, tmp_path: Path) -> None:
    journal = tmp_path / "tspl.journal"
    with TsplPrinter(config(host="127.0.0.1", port=twin.port, journal_path=journal)) as printer:
        assert printer.printer_status().idle
        result = printer.print_label(LabelJob("job-1", mug()))
        assert result.outcome == "printed", result
        assert printer.status().state == "connected"
    with TsplPrinter(config(host="127.0.0.1", port=twin.port, journal_path=journal)) as again:
        assert again.print_label(LabelJob("job-1", mug())).outcome == "printed"
    assert twin.job_ids() == ["job-1"]
    [label] = twin.labels()
    assert label.problems == ()
    assert "QTY 12 EA" in label.texts


def test_paper_out_is_reported_and_nothing_is_sent(twin: TsplPrinterTwin) -> None:
    twin.set_paper_out()
    with TsplPrinter(config(host="127.0.0.1", port=twin.port, job_timeout=0.5)) as printer:
        status = printer.printer_status()
        assert status.online
        assert "paper_out" in status.conditions
        result = printer.print_label(LabelJob("job-1", mug()))
    assert result.outcome == "not_printed"
    assert twin.received() == []


def test_a_job_held_by_a_paused_printer_is_delivered_and_never_resent(
    twin: TsplPrinterTwin, tmp_path: Path
) -> None:
    journal = tmp_path / "tspl.journal"
    twin.set_slow(0.0, 2.0)  # long enough to pause it mid-label on a busy machine
    with TsplPrinter(
        config(host="127.0.0.1", port=twin.port, journal_path=journal, job_timeout=1.0)
    ) as printer:

        def pause_soon() -> None:
            eventually(twin.received)
            twin.pause()

        pauser = threading.Thread(target=pause_soon)
        pauser.start()
        result = printer.print_label(LabelJob("job-1", mug()))
        pauser.join()
        assert result.outcome == "delivered", result
        twin.set_slow(0.0, 0.0)
        twin.resume()
        eventually(twin.labels)
        assert printer.print_label(LabelJob("job-1", mug())).outcome == "printed"
    assert len(twin.received()) == 1


def test_a_job_cut_off_mid_send_stays_in_doubt(twin: TsplPrinterTwin) -> None:
    """TSPL keeps no label count: the driver cannot tell, and never guesses a resend."""
    twin.drop_next("mid_job")
    with TsplPrinter(config(host="127.0.0.1", port=twin.port, job_timeout=1.0)) as printer:
        result = printer.print_label(LabelJob("job-1", mug()))
    assert result.outcome == "in_doubt", result
    assert twin.labels() == []


def test_driver_prints_over_a_serial_line(twin: TsplPrinterTwin, tmp_path: Path) -> None:
    with PtyBridge(("127.0.0.1", twin.port), tmp_path / "tspl-tty") as bridge:
        with TsplPrinter(config(serial_port=str(bridge.device_path))) as printer:
            result = printer.print_label(LabelJob("job-serial", mug()))
        assert result.outcome == "printed", result
    assert twin.job_ids() == ["job-serial"]


def test_driver_over_the_loopback_answers_what_the_status_byte_says() -> None:
    host, device = loopback_pair("tspl-loopback")

    def answer() -> None:
        assert device.read(5.0) == STATUS_REQUEST
        device.write(b"\x11")  # head open and paused

    responder = threading.Thread(target=answer)
    responder.start()
    with TsplPrinter(config(host="unused"), transport=host) as printer:
        status = printer.printer_status()
    responder.join()
    assert set(status.conditions) == {"head_open", "paused"}
    assert not status.ready


@given(name=NAMES, lot=NAMES.filter(lambda s: len(s) <= 40))
def test_a_whole_item_label_reads_back_field_for_field(name: str, lot: str) -> None:
    """Quotes, commas and command words in an item's name or lot stay text on the label."""
    item = mug(name=name, lot=lot)
    layout = item_label_layout(item)
    [label] = parse_job(build_tspl(layout, job_id="job-1"))
    assert label.problems == ()
    assert label.quantity == 1
    assert len(label.fields) == len(layout.fields)
    assert name[:40] in label.texts
    assert f"LOT {lot}   EXP 2027-01-31" in label.texts
