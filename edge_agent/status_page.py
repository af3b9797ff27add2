"""A tiny local status endpoint for the site's technician, monitoring and tests.

``/healthz`` is the agent's whole status as JSON; ``/readyz`` is 200 only while the ledger
answers and is at this agent's schema; ``/metrics`` is the Prometheus text
(:mod:`edge_agent.metrics`); ``/guide/<tag>/`` the user guide's station chapters, for
reading at the station while central is out of reach (:mod:`edge_agent.guide_pages`).

Standard library only: the agent must not need a web framework to say how it is. Every
answer passes through :func:`jxc.logs.redact`, like every log line, so a secret that some
quoted text carries (another system's answer) is not shown here either.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_agent import guide_pages
from edge_agent.jobs import describe_error
from jxc.logs import redact

log = logging.getLogger("edge_agent.status")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus' text format, as prometheus-client's ``CONTENT_TYPE_LATEST`` says it."""


class StatusServer:
    """Serves ``GET /healthz`` with whatever ``report()`` returns, as JSON."""

    def __init__(
        self,
        host: str,
        port: int,
        report: Callable[[], dict[str, Any]],
        *,
        ready: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        report_fn = report

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = self.path.split("?")[0]
                try:
                    if page in ("/healthz", "/"):
                        self._send(200, report_fn())
                    elif page == "/readyz" and ready is not None:
                        is_ready, body = ready()
                        self._send(200 if is_ready else 503, body)
                    elif page == "/metrics" and metrics is not None:
                        self._send_bytes(200, metrics(), METRICS_CONTENT_TYPE)
                    elif page.startswith("/guide/") or page == "/guide":
                        self._send_raw(*guide_pages.page(page))
                    else:
                        self._send(404, {"detail": f"no such page {self.path!r}; try /healthz"})
                except Exception as exc:  # the page must answer even when the agent is sick
                    log.exception("status report failed")
                    self._send(503, {"status": "error", "detail": describe_error(exc)})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body, default=str, ensure_ascii=False).encode()
                self._send_bytes(code, payload, "application/json")

            def _send_bytes(self, code: int, payload: bytes, content_type: str) -> None:
                payload = redact(payload.decode()).encode()
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _send_raw(self, code: int, payload: bytes, content_type: str) -> None:
                """The guide's pages and screenshots: our own text, nothing to redact."""
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug(format, *args)

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="status-page", daemon=True
        )

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when the site file said 0)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/healthz"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
