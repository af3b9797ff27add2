"""Ports for test servers that another process binds a moment later.

Asking the kernel for port 0 and closing the socket hands out an *ephemeral* port: one of
the range the kernel also gives every outgoing connection. With two pytest workers (and
perhaps another suite beside them) making thousands of client connections, one of those
can take the port before the server binds it, and the test then waits for a server that
never started (seen: an edge whose status port was taken, under a load average of 10). A
port below the ephemeral range is never handed to an outgoing connection; one picked at
random and checked free clashes with another test's only by a one-in-thousands chance.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOW = 20_000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_pick = random.SystemRandom()  # never the seeded module state that hypothesis resets


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port() -> int:
    """A loopback TCP port nobody listens on now and no outgoing connection will take."""
    high = _ephemeral_low() - 1
    if high <= _LOW:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(500):
        port = _pick.randint(_LOW, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between {_LOW} and {high}")
