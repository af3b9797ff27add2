"""A real Mosquitto broker for tests, started on a free loopback port and stopped after.

Import the fixtures explicitly where they are needed (they are not in any conftest):

    from tests.mqtt_broker import Broker, broker_fixture, mqtt_broker_fixture  # noqa: F401

``mqtt_broker`` is one broker per test module; ``broker`` is the same broker, checked to be
running at the start of each test (a test that failed mid-outage must not take the next one
down with it). :meth:`Broker.stop`, :meth:`Broker.start` and :meth:`Broker.down` take it away
and bring it back **on the same port**, which is what a broker restart looks like to a
client. Persistence is on, as it must be in production for persistent sessions to survive
a broker restart; ``start(forget_sessions=True)`` simulates a broker that lost them.

Without the mosquitto binary the fixture skips, loudly, on a developer's machine, and fails
when ``CI=true``: a CI run that silently skipped every broker test would prove nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.mqtt_devices import BrokerLogin
from tests.patience import patience_timeout
from tests.ports import free_port
from tests.tls_certs import TestCa, make_ca

__all__ = [
    "MOSQUITTO",
    "MQTT_USER",
    "Broker",
    "SecureBroker",
    "broker_fixture",
    "eventually",
    "free_port",
    "mqtt_broker_fixture",
    "no_leaks_fixture",
    "secure_mqtt_broker_fixture",
    "write_password_file",
]

MOSQUITTO = os.environ.get("JXC_MOSQUITTO", "/usr/sbin/mosquitto")
MQTT_USER = "dock-devices"
"""The one account of the secure broker."""
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0


def eventually(check: object, *, within: float, step: float = 0.02, what: str = "") -> float:
    """Poll ``check()`` until it is truthy; return how long it took, or fail the test.

    Bounded polling instead of sleeps: fast when the machine is idle, patient under load.
    """
    assert callable(check)
    within = patience_timeout(within)
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s: {what or check}")
        time.sleep(step)


@dataclass
class Broker:
    """One mosquitto process and everything needed to restart it on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    secure_lines: list[str] = field(default_factory=list)
    """Set by a secure broker: the TLS listener's files and the password file; the
    listener then speaks TLS only and anonymous clients are refused."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # mosquitto 2 listens only on localhost and refuses anonymous clients unless told:
        # say both explicitly, on our own port.
        # Started as root (a container), mosquitto drops to the "mosquitto" user, who cannot
        # write into a pytest tmp dir; a throwaway test broker may stay who we are.
        user = ["user root"] if os.geteuid() == 0 else []
        self.config_path.write_text(
            "\n".join(
                [
                    *user,
                    f"listener {self.port} {self.host}",
                    *(self.secure_lines or ["allow_anonymous true"]),
                    "persistence true",
                    f"persistence_location {self.data_dir}/",
                    "autosave_interval 1",
                    "max_queued_messages 1000",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "connection_messages true",
                    "",
                ]
            )
        )

    def start(self, *, forget_sessions: bool = False) -> None:
        """Start (or restart) on the same port and wait until it accepts connections."""
        with self._lock:
            if self.running:
                return
            if forget_sessions:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            self.write_config()
            with self.log_path.open("ab") as log:
                # The child gets the log file; our copy closes at once, so the test process
                # holds no descriptor for the broker (the no-leak checks count them).
                self.process = subprocess.Popen(
                    [MOSQUITTO, "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    close_fds=True,
                )
            self.starts += 1
            self._wait_until_listening()

    def stop(self, *, hard: bool = False) -> None:
        """Stop it: SIGTERM saves sessions to disk, ``hard`` (SIGKILL) loses unsaved state."""
        with self._lock:
            process, self.process = self.process, None
            if process is None or process.poll() is not None:
                return
            process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)

    def restart(self, *, down_for: float = 0.0, hard: bool = False) -> None:
        self.stop(hard=hard)
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    @contextlib.contextmanager
    def down(self, *, hard: bool = False, forget_sessions: bool = False) -> Iterator[None]:
        """The broker is gone for the body of the ``with``, and back after it."""
        self.stop(hard=hard)
        try:
            yield
        finally:
            self.start(forget_sessions=forget_sessions)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _wait_until_listening(self) -> None:
        give_up_at = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < give_up_at:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self.process.returncode} on port {self.port}:\n"
                    f"{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=patience_timeout(0.5)),
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_tail()}")


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """A Mosquitto password file, as ``mosquitto_passwd -b`` writes it (mosquitto 2).

    The documented ``$7$`` format: PBKDF2-HMAC-SHA512 with 101 iterations over a 12-byte
    random salt, salt and hash in base64. Written here rather than by running the tool,
    so the tests need only the broker; the broker accepting it is the proof of the format.
    """
    lines = []
    for user, password in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
        encoded = f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
        lines.append(f"{user}:{encoded}\n")
    path.write_text("".join(lines))
    path.chmod(0o600)


def _require_mosquitto() -> None:
    if os.access(MOSQUITTO, os.X_OK):
        return
    reason = (
        f"!!! MQTT BROKER TESTS NOT RUN: no mosquitto binary at {MOSQUITTO} "
        "(apt-get install mosquitto, or set JXC_MOSQUITTO) !!!"
    )
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(reason + " -- CI must run them, so this is a failure, not a skip")
    pytest.skip(reason)


@pytest.fixture(name="mqtt_broker", scope="module")
def mqtt_broker_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the module, stopped at its end."""
    _require_mosquitto()
    broker = Broker(workdir=tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class SecureBroker:
    """The module's TLS + password broker, and what a client needs to log in to it."""

    def __init__(
        self, broker: Broker, ca: TestCa, password: str, password_file: Path, mtls_port: int
    ) -> None:
        self.broker = broker
        self.ca = ca
        self.password = password
        self.password_file = password_file
        self.mtls_port = mtls_port
        """A second TLS listener that also wants a client certificate from ``ca``."""

    def login(self, password: str | None = None) -> BrokerLogin:
        return BrokerLogin(
            username=MQTT_USER, password=password or self.password, tls_ca_file=self.ca.cert
        )

    def refusals(self) -> int:
        """Connections the broker turned away for their credentials (its own log)."""
        return self.broker.log_tail(10_000).count("not authorised")


@pytest.fixture(name="secure", scope="module")
def secure_mqtt_broker_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """One broker for the module with a TLS-only listener (a CA and server certificate
    made here), a password file with one account, and anonymous clients refused."""
    _require_mosquitto()
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    ca = make_ca(workdir / "pki")
    server = ca.issue("broker", server=True)
    password = secrets.token_urlsafe(24)
    broker_passwords = workdir / "passwd"
    write_password_file(broker_passwords, {MQTT_USER: password})
    mtls_port = free_port()
    tls_files = [f"cafile {ca.cert}", f"certfile {server.cert}", f"keyfile {server.key}"]
    broker = Broker(
        workdir=workdir,
        secure_lines=[
            *tls_files,
            "require_certificate false",
            f"password_file {broker_passwords}",
            "allow_anonymous false",
            f"listener {mtls_port} 127.0.0.1",
            *tls_files,
            "require_certificate true",
        ],
    )
    client_password = workdir / "device-password"
    client_password.write_text(password + "\n")
    client_password.chmod(0o600)
    broker.start()
    try:
        yield SecureBroker(broker, ca, password, client_password, mtls_port)
    finally:
        broker.stop()


@pytest.fixture(name="broker")
def broker_fixture(mqtt_broker: Broker) -> Broker:
    """The module's broker, running at the start of this test."""
    mqtt_broker.start()
    return mqtt_broker


@pytest.fixture(name="no_mqtt_leaks")
def no_leaks_fixture() -> Iterator[None]:
    """Fail a test that leaves descriptors or threads behind (for packages without the
    driver tests' ``no_leaks``). Threads get a moment to finish: a joined thread can still
    show in ``threading.enumerate`` for an instant under load."""
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + patience_timeout(3.0)
    while True:
        leaked_threads = [t for t in threading.enumerate() if t not in threads_before]
        leaked_fds = set(os.listdir("/proc/self/fd")) - fds_before
        if not (leaked_threads or leaked_fds) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked_fds, f"leaked file descriptors: {sorted(leaked_fds)}"
    assert not leaked_threads, f"leaked threads: {[t.name for t in leaked_threads]}"


@pytest.fixture(name="subscriber")
def subscriber_fixture(broker: Broker) -> Iterator[Callable[[str], queue.Queue[bytes]]]:
    """Subscribe to topics on the test broker; each topic's payloads arrive in a queue.

    ``subscribe(topic)`` returns once the broker confirmed the subscription, so nothing the
    test publishes afterwards can be missed.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"jxc-test-{os.getpid()}")
    queues: dict[str, queue.Queue[bytes]] = {}
    subscribed: queue.Queue[int] = queue.Queue()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        queues.setdefault(message.topic, queue.Queue()).put(bytes(message.payload))

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.put(1)
    client.connect(broker.host, broker.port)
    client.loop_start()

    def subscribe(topic: str) -> queue.Queue[bytes]:
        sink = queues.setdefault(topic, queue.Queue())
        client.subscribe(topic, qos=1)
        subscribed.get(timeout=patience_timeout(5))
        return sink

    try:
        yield subscribe
    finally:
        client.loop_stop()
        client.disconnect()
