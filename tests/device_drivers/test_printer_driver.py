"""The ZPL printer driver against the printer twin over loopback TCP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_drivers.printers import (
    Label,
    LabelDataError,
    LabelPrinter,
    PrintJob,
    Text,
    ZplPrinter,
    ZplPrinterConfig,
    build_zpl,
)
from device_drivers.printers.journal import JobJournal, JobRecord
from simulators.printer import ZplPrinterTwin
from tests.patience import patience_timeout

MakePrinter = Callable[..., ZplPrinter]


def job(job_id: str, text: str = "hello", quantity: int = 1) -> PrintJob:
    return PrintJob(job_id, build_zpl(Label((Text(10, 10, text),), quantity=quantity)))


@pytest.fixture
def twin(no_leaks: None) -> Iterator[ZplPrinterTwin]:
    with ZplPrinterTwin() as printer:
        yield printer


@pytest.fixture
def make_printer(twin: ZplPrinterTwin, no_leaks: None) -> Iterator[MakePrinter]:
    """Drivers pointed at the twin, with timings short enough for tests; closed at teardown."""
    made: list[ZplPrinter] = []

    def make(**overrides: Any) -> ZplPrinter:
        settings: dict[str, Any] = {
            "device_id": "dock-1-printer",
            "host": "127.0.0.1",
            "port": twin.port,
            "reply_timeout": 0.3,
            "job_timeout": 5.0,
            "poll_interval": 0.03,
            "settle_time": 0.1,
            "reconnect_min_delay": 0.05,
            "reconnect_max_delay": 0.4,
        }
        settings.update(overrides)
        printer = ZplPrinter(ZplPrinterConfig(**settings))
        made.append(printer)
        return printer

    yield make
    for printer in made:
        printer.close()


def eventually(check: Callable[[], bool], within: float = 3.0) -> float:
    within = patience_timeout(within)
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"not true within {within} s")


def test_driver_is_a_label_printer(make_printer: MakePrinter) -> None:
    assert isinstance(make_printer(), LabelPrinter)


def test_a_job_prints_once_and_is_confirmed(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()

    result = printer.print_label(job("rcv-1", "纯牛奶", quantity=2))

    assert (result.outcome, result.attempts, result.printed) == ("printed", 1, True)
    assert result.status is not None
    assert result.status.idle
    [label] = twin.labels()
    assert (label.job_id, label.quantity, label.texts) == ("rcv-1", 2, ["纯牛奶"])
    assert twin.odometer == 2
    health = printer.status()
    assert health.state == "connected"
    assert not any(health.errors.values())
    assert printer.printer_status().ready
    ident = printer.identify()
    assert ident is not None
    assert ident.model == "ZT410-203dpi"


def test_same_job_id_is_answered_from_memory_not_printed_again(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    first = printer.print_label(job("rcv-2"))

    again = printer.print_label(job("rcv-2"))

    assert (first.outcome, again.outcome) == ("printed", "printed")
    assert twin.job_ids() == ["rcv-2"]


def test_jobs_print_in_the_order_submitted(twin: ZplPrinterTwin, make_printer: MakePrinter) -> None:
    printer = make_printer()
    futures = [printer.submit(job(f"j-{n}")) for n in range(6)]

    assert [f.result(timeout=patience_timeout(10)).outcome for f in futures] == ["printed"] * 6
    assert twin.job_ids() == [f"j-{n}" for n in range(6)]


@pytest.mark.parametrize("fault", ["pause", "paper_out", "paper_out_silent", "head_open"])
def test_job_waits_for_the_printer_then_prints(fault: str, no_leaks: None) -> None:
    with ZplPrinterTwin(silent_when_faulted=fault.endswith("silent")) as twin:
        printer = ZplPrinter(
            ZplPrinterConfig(
                "p", host="127.0.0.1", port=twin.port, reply_timeout=0.2, poll_interval=0.03
            )
        )
        try:
            fix = {
                "pause": (twin.pause, twin.resume),
                "paper_out": (twin.set_paper_out, lambda: twin.set_paper_out(False)),
                "paper_out_silent": (twin.set_paper_out, lambda: twin.set_paper_out(False)),
                "head_open": (twin.set_head_open, lambda: twin.set_head_open(False)),
            }[fault]
            fix[0]()
            status = printer.printer_status()
            assert not status.ready
            if fault == "paper_out_silent":
                assert status.conditions == ("offline",)
            future = printer.submit(job("waits"))
            time.sleep(0.4)
            assert not future.done()
            assert twin.received() == []

            fix[1]()
            result = future.result(timeout=patience_timeout(5))

            assert result.outcome == "printed"
            assert twin.job_ids() == ["waits"]
        finally:
            printer.close()


def test_no_reply_to_host_status_is_offline_and_the_job_is_not_printed(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer(job_timeout=0.8)
    twin.mute_status()

    status = printer.printer_status()
    result = printer.print_label(job("silent"))

    assert (status.online, status.ready, status.conditions) == (False, False, ("offline",))
    assert status.detail == "no reply to ~HS"
    assert (result.outcome, result.printed, result.attempts) == ("not_printed", False, 0)
    assert twin.received() == []
    health = printer.status()
    assert health.state == "degraded"
    assert health.errors["no_status"] >= 2
    assert health.errors["job_not_printed"] == 1


def test_connection_dropped_mid_job_prints_it_exactly_once(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    twin.drop_next("mid_job")

    result = printer.print_label(job("cut-mid"))

    assert (result.outcome, result.attempts) == ("printed", 2)
    assert twin.job_ids() == ["cut-mid"]
    assert printer.status().errors["job_in_doubt"] == 1


def test_connection_dropped_after_the_job_does_not_resend_it(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    twin.drop_next("after_job")

    result = printer.print_label(job("cut-after"))

    assert (result.outcome, result.attempts) == ("printed", 1)
    assert twin.job_ids() == ["cut-after"]
    assert [label.job_id for label in twin.received()] == ["cut-after"]


def test_dropped_after_the_job_on_a_slow_printer_is_found_in_its_buffer(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    twin.set_slow(print_delay=0.4)
    twin.drop_next("after_job")

    result = printer.print_label(job("slow-cut", quantity=2))

    assert (result.outcome, result.attempts) == ("printed", 1)
    assert twin.job_ids() == ["slow-cut"]
    assert twin.odometer == 2


def test_without_a_label_counter_a_cut_job_stays_in_doubt(no_leaks: None) -> None:
    with ZplPrinterTwin(label_counter=False) as twin:
        printer = ZplPrinter(
            ZplPrinterConfig("p", host="127.0.0.1", port=twin.port, reply_timeout=0.2)
        )
        try:
            assert printer.print_label(job("plain")).outcome == "printed"
            twin.drop_next("mid_job")

            result = printer.print_label(job("cut"))
            again = printer.print_label(job("cut"))

            assert (result.outcome, again.outcome) == ("in_doubt", "in_doubt")
            assert twin.job_ids() == ["plain"]
        finally:
            printer.close()


def test_delivered_job_waits_for_a_printer_that_paused_after_receiving_it(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer(job_timeout=0.6)
    twin.set_slow(print_delay=0.3)
    future = printer.submit(job("held"))
    eventually(lambda: bool(twin.received()))
    twin.pause()

    result = future.result(timeout=patience_timeout(5))
    assert result.outcome == "delivered"
    twin.resume()
    again = printer.print_label(job("held"))

    assert again.outcome == "printed"
    assert twin.job_ids() == ["held"]


def test_twin_restarted_on_the_same_port_is_reconnected_within_two_seconds(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    assert printer.print_label(job("before")).printed
    port = twin.port
    twin.close()
    assert not printer.printer_status().online
    assert printer.status().state == "disconnected"

    with ZplPrinterTwin(port=port) as second:
        took = eventually(lambda: printer.printer_status().ready, within=2.0)
        result = printer.print_label(job("after"))

        assert took < patience_timeout(2.0)
        assert result.printed
        assert second.job_ids() == ["after"]
    health = printer.status()
    assert health.reconnects >= 1
    assert health.errors["io"] >= 1


def test_unreachable_printer_fails_jobs_without_raising(no_leaks: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    printer = ZplPrinter(
        ZplPrinterConfig(
            "p",
            host="127.0.0.1",
            port=free_port,
            job_timeout=0.5,
            poll_interval=0.02,
            reconnect_min_delay=0.01,
            reconnect_max_delay=0.05,
        )
    )
    try:
        result = printer.print_label(job("nowhere"))

        assert result.outcome == "not_printed"
        assert not printer.printer_status().online
        health = printer.status()
        assert health.state == "disconnected"
        assert health.errors["io"] == 1  # one outage, however many retries
        assert health.last_error is not None
    finally:
        printer.close()


def test_bad_jobs_are_refused_in_the_callers_thread(make_printer: MakePrinter) -> None:
    printer = make_printer()

    with pytest.raises(LabelDataError):
        printer.submit(PrintJob("bad", b"^XA^FDx^FS~JA^XZ"))


def test_close_settles_queued_jobs_promptly(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer(job_timeout=30)
    twin.pause()
    waiting = [printer.submit(job(f"q-{n}")) for n in range(3)]
    time.sleep(0.2)

    started = time.monotonic()
    printer.close()

    assert time.monotonic() - started < 2
    assert {f.result(timeout=patience_timeout(1)).outcome for f in waiting} == {"not_printed"}
    assert printer.submit(job("late")).result(timeout=patience_timeout(1)).outcome == "not_printed"
    assert twin.received() == []


def test_status_from_another_thread_while_a_job_waits(
    twin: ZplPrinterTwin, make_printer: MakePrinter
) -> None:
    printer = make_printer()
    twin.pause()
    future = printer.submit(job("busy"))
    seen: list[bool] = []

    def watch() -> None:
        for _ in range(10):
            seen.append(printer.printer_status().paused)

    watcher = threading.Thread(target=watch)
    watcher.start()
    watcher.join()
    twin.resume()

    assert future.result(timeout=patience_timeout(5)).printed
    assert seen == [True] * 10


# -- across restarts of the agent -------------------------------------------------------


def test_journal_answers_a_printed_job_after_a_restart(
    twin: ZplPrinterTwin, make_printer: MakePrinter, tmp_path: Path
) -> None:
    journal = tmp_path / "printer.jsonl"
    assert make_printer(journal_path=journal).print_label(job("kept")).printed

    result = make_printer(journal_path=journal).print_label(job("kept"))

    assert result.printed
    assert twin.job_ids() == ["kept"]


def test_crash_before_the_bytes_left_prints_after_restart(
    twin: ZplPrinterTwin, make_printer: MakePrinter, tmp_path: Path
) -> None:
    journal = tmp_path / "printer.jsonl"
    JobJournal(journal).record(JobRecord("crashed", "sending", 1, twin.odometer, 1))

    result = make_printer(journal_path=journal).print_label(job("crashed"))

    assert (result.outcome, result.attempts) == ("printed", 2)
    assert twin.job_ids() == ["crashed"]


def test_crash_after_the_bytes_left_is_not_printed_again_after_restart(
    twin: ZplPrinterTwin, make_printer: MakePrinter, tmp_path: Path
) -> None:
    journal = tmp_path / "printer.jsonl"
    JobJournal(journal).record(JobRecord("crashed", "sending", 1, twin.odometer, 1))
    with socket.create_connection(twin.address) as old_process:
        old_process.sendall(job("crashed").zpl)
    twin.wait_for_labels(1)

    result = make_printer(journal_path=journal).print_label(job("crashed"))

    assert (result.outcome, result.attempts) == ("printed", 1)
    assert twin.job_ids() == [None]  # the label the crashed process sent, not a second one
    assert len(twin.received()) == 1


def test_journal_skips_a_torn_last_line(tmp_path: Path) -> None:
    journal = tmp_path / "printer.jsonl"
    JobJournal(journal).record(JobRecord("a", "printed", 1, 5, 1))
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"job_id": "b", "sta')

    reloaded = JobJournal(journal)

    assert reloaded.get("a") == JobRecord("a", "printed", 1, 5, 1)
    assert reloaded.get("b") is None


def test_journal_stays_bounded(tmp_path: Path) -> None:
    journal = JobJournal(tmp_path / "printer.jsonl", keep=5)
    for n in range(40):
        journal.record(JobRecord(f"j{n}", "printed"))

    reloaded = JobJournal(tmp_path / "printer.jsonl", keep=5)

    assert reloaded.get("j39") is not None
    assert reloaded.get("j0") is None
    assert len((tmp_path / "printer.jsonl").read_text().splitlines()) <= 10
