"""Why a port would not open, in the words of the engineer standing next to it.

pyserial words a missing port as ``could not open port /dev/x: [Errno 2] No such file or
directory: '/dev/x'`` and a driver that adds ``cannot open /dev/x:`` in front shows the path
three times and the cause in the middle. The cause is the innermost error of the chain
(``No such file or directory``), and the most common ones have a next step an engineer can
take (plug the adapter in, stop the agent that holds the port, join the ``dialout`` group).
These helpers find that cause, whatever layer wrapped it, so every driver says it alike.
"""

from __future__ import annotations

import errno
import termios

__all__ = ["line_settings_text", "port_error_text", "refuses_line_settings"]

_NEXT_STEPS: dict[int, str] = {
    errno.ENOENT: "no such port: is the adapter plugged in, and the address right?",
    errno.ENODEV: "no such device: is the adapter plugged in, and the address right?",
    errno.ENXIO: "no such device: is the adapter plugged in, and the address right?",
    errno.ENOTTY: "not a serial port: is the address the right device?",
    errno.EACCES: "permission denied: the agent's user needs the port (the dialout group)",
    errno.EPERM: "permission denied: the agent's user needs the port (the dialout group)",
    errno.EAGAIN: "in use by another program (is the edge agent running? stop it first)",
    errno.EBUSY: "in use by another program (is the edge agent running? stop it first)",
    errno.ECONNREFUSED: "connection refused: nothing listens at that address",
    errno.EHOSTUNREACH: "host unreachable: check the network and the address",
    errno.ENETUNREACH: "network unreachable: check the network and the address",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during, outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def refuses_line_settings(exc: BaseException) -> bool:
    """Whether the port itself refused the serial settings asked of it.

    The kernel answers a ``tcsetattr`` it cannot carry out with ``EINVAL``: a pseudo-terminal
    asked for 7 data bits or parity, or an adapter asked for a speed it lacks. pyserial lets
    that ``termios.error`` through as it is, so it is found anywhere in the chain.
    """
    return any(
        isinstance(e, termios.error) and bool(e.args) and e.args[0] == errno.EINVAL
        for e in _chain(exc)
    )


def port_error_text(exc: BaseException) -> str:
    """The cause of a failed open, read or write, said once and without the path.

    The innermost error with an errno decides; a known errno gets its next step. Without
    one (a timeout, a library's own message) the innermost message is given as it is: the
    outer ones are the same message with a path put in front.
    """
    chain = _chain(exc)
    for error in reversed(chain):
        code: object = error.errno if isinstance(error, OSError) else None
        if isinstance(error, termios.error) and error.args:
            code = error.args[0]
        if isinstance(code, int) and code in _NEXT_STEPS:
            return _NEXT_STEPS[code]
        if isinstance(error, OSError) and error.strerror and code is not None:
            return str(error.strerror)
        if isinstance(error, termios.error) and len(error.args) == 2:
            return str(error.args[1])
    for error in reversed(chain):
        if str(error):
            return str(error)
    return type(exc).__name__


def line_settings_text(baudrate: int, bytesize: int, parity: str, stopbits: int) -> str:
    """Serial settings as printed on a scale's menu and in a manual: ``7E1 at 9600 baud``."""
    return f"{bytesize}{parity}{stopbits} at {baudrate} baud"
