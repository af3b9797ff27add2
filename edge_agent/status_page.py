"""A tiny local status endpoint for the site's technician, monitoring and tests.

``/healthz`` is the agent's whole status as JSON; ``/status`` the same for a person, as one
HTML page (the agent's alerts, the outbox, and the site's stock alerts: below safety stock,
at the reorder point, negative, expired or expiring lots, :mod:`edge_agent.stock_alerts`),
so the shop sees them with central out of reach; ``/readyz`` is 200 only while the ledger
answers and is at this agent's schema; ``/metrics`` is the Prometheus text
(:mod:`edge_agent.metrics`); ``/guide/<tag>/`` the user guide's station chapters, for
reading at the station while central is out of reach (:mod:`edge_agent.guide_pages`).

Standard library only: the agent must not need a web framework to say how it is. Every
answer passes through :func:`jxc.logs.redact`, like every log line, so a secret that some
quoted text carries (another system's answer) is not shown here either.
"""

from __future__ import annotations

import html
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


_STYLE = (
    "body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:0 auto;"
    "max-width:900px;padding:12px;line-height:1.4}table{border-collapse:collapse;"
    "display:block;overflow-x:auto}td,th{border:1px solid #ccc;padding:4px 6px;"
    "text-align:left}.negative_stock,.expired{background:#fdd}.below_safety{background:#fec}"
)
_KIND_NAMES = {
    "negative_stock": "负库存 negative stock",
    "below_safety": "低于安全库存 below safety stock",
    "below_reorder": "到达再订货点 at reorder point",
    "expiry": "临期 expiring",
}


def render_html(report: dict[str, Any]) -> str:
    """The status report as a page a person reads at the site (390 px wide too): every
    value escaped, nothing fetched from elsewhere."""

    def esc(value: object) -> str:
        return html.escape("" if value is None else str(value))

    ledger = report.get("ledger") or {}
    stock = report.get("stock_alerts") or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{esc(report.get('site_id'))} 状态 status</title><style>{_STYLE}</style>"
        f"</head><body><h1>{esc(report.get('site_id'))} 状态 status</h1>",
        f"<p>jxc {esc(report.get('version'))} · 待上传 outbox {esc(ledger.get('pending'))}"
        f" · 死信 dead letters {esc(ledger.get('dead_letters'))}</p>",
        "<section id='agent-alerts'><h2>代理告警 Agent alerts</h2>",
    ]
    agent_alerts = report.get("alerts") or []
    parts.append(
        "<ul>" + "".join(f"<li>{esc(each)}</li>" for each in agent_alerts) + "</ul>"
        if agent_alerts
        else "<p>无 none</p>"
    )
    parts.append("</section><section id='stock-alerts'><h2>库存预警 Stock alerts</h2>")
    if stock.get("error"):
        parts.append(
            f"<p class='negative_stock'>无法计算 cannot compute: {esc(stock['error'])}</p>"
        )
    counts = stock.get("by_kind") or {}
    parts.append(
        f"<p>{esc(stock.get('on'))}: "
        + " · ".join(f"{esc(_KIND_NAMES.get(k, k))} {esc(n)}" for k, n in counts.items())
        + "</p>"
    )
    rows = stock.get("alerts") or []
    if rows:
        parts.append(
            "<table><thead><tr><th>预警 alert</th><th>商品 item</th><th>库位 location</th>"
            "<th>批次 lot</th><th>数量 qty</th><th>阈值 threshold</th><th>说明 detail</th>"
            "</tr></thead><tbody>"
        )
        for row in rows:
            css = "expired" if row["kind"] == "expiry" and row["threshold"] == "0" else row["kind"]
            parts.append(
                f"<tr class='{esc(css)}'><td>{esc(_KIND_NAMES.get(row['kind'], row['kind']))}</td>"
                f"<td>{esc(row['item'])}</td><td>{esc(row['location'])}</td>"
                f"<td>{esc(row['lot'])}</td><td>{esc(row['qty'])} {esc(row['uom'])}</td>"
                f"<td>{esc(row['threshold'])}</td><td>{esc(row['detail'])}</td></tr>"
            )
        parts.append("</tbody></table>")
        if stock.get("truncated"):
            parts.append(f"<p>… {esc(stock.get('count'))} in all; see /healthz</p>")
    elif not stock.get("error"):
        parts.append("<p>无 none</p>")
    parts.append("</section></body></html>")
    return "".join(parts)


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
                    elif page == "/status":
                        payload = redact(render_html(report_fn())).encode()
                        self._send_raw(200, payload, "text/html; charset=utf-8")
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
