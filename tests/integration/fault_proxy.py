"""A loopback TCP proxy that lets central answer, then cuts the edge off before the answer.

This is the nastiest moment for exactly-once: central has committed the batch, the edge
never hears so, and must resend. Bytes are forwarded untouched; on a seeded random choice
the proxy closes both sides when a response starts, instead of passing it on.
"""

from __future__ import annotations

import random
import socket
import threading
from contextlib import suppress

from tests.patience import patience_timeout


class DropAfterCommitProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; drop up to ``max_drops`` responses."""

    def __init__(
        self, upstream_port: int, *, seed: int, drop_probability: float, max_drops: int
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rng = random.Random(seed)
        self.drop_probability = drop_probability
        self.max_drops = max_drops
        self.drops = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=patience_timeout(5))
            except OSError:
                client.close()  # central is down: the edge sees a refused connection
                continue
            for source, sink, responses in ((client, upstream, False), (upstream, client, True)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, responses, client, upstream), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _decide_drop(self) -> bool:
        with self._lock:
            if self.drops < self.max_drops and self.rng.random() < self.drop_probability:
                self.drops += 1
                return True
            self.forwarded += 1
            return False

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        responses: bool,
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        try:
            while not self._stop.is_set():
                source.settimeout(0.5)
                try:
                    chunk = source.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                if responses and chunk.startswith(b"HTTP/") and self._decide_drop():
                    break  # central answered, so it committed: the edge never hears of it
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept.join(timeout=patience_timeout(2))
        for thread in self._threads:
            thread.join(timeout=patience_timeout(2))
