"""JSON log lines: a registered secret never reaches one, whatever carries it there."""

from __future__ import annotations

import json
import logging
import sys

from jxc.logs import REDACTED, JsonFormatter, never_log, redact


def line(message: str, **extra: object) -> str:
    record = logging.makeLogRecord({"name": "t", "levelno": 40, "levelname": "ERROR"})
    record.msg = message
    record.__dict__.update(extra)
    return JsonFormatter().format(record)


def test_a_registered_secret_is_redacted_in_message_extras_and_tracebacks() -> None:
    secret = "Tz0-registered_secret_for_the_log_test_1234"
    never_log(secret)
    try:
        raise RuntimeError(f"central said: {secret!r} is wrong")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.makeLogRecord(
        {"msg": f"got {secret}", "reason": {"body": secret}, "exc_info": exc_info}
    )
    rendered = JsonFormatter().format(record)
    assert secret not in rendered
    entry = json.loads(rendered)
    assert entry["msg"] == f"got {REDACTED}"
    assert entry["reason"] == {"body": REDACTED}
    assert REDACTED in entry["exc"]


def test_a_secret_is_found_in_its_json_escaped_form_too() -> None:
    secret = 'with "quotes" and \\ backslash, long enough'
    never_log(secret)
    rendered = line("x", detail=secret)
    assert json.loads(rendered)["detail"] == REDACTED
    assert redact(f"<{secret}>") == f"<{REDACTED}>"


def test_short_values_are_not_taken_as_secrets() -> None:
    never_log("EA")
    assert json.loads(line("1 EA received"))["msg"] == "1 EA received"
