"""``/readyz`` and ``/metrics`` on central, and the request id in its log lines."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from central_api.core.config import Settings
from central_api.core.db import create_db_engine, upgrade_database
from jxc.logs import JsonFormatter
from jxc.paths import ITEMS, METRICS, READY, SYNC_EVENTS
from tests.central.conftest import SiteLedger, central_app


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get(METRICS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_ingest_and_site_sync(client: TestClient) -> None:
    before = samples(client)
    site = SiteLedger("S07")
    events = site.receipts(3)
    assert client.post(SYNC_EVENTS, json=site.batch(events)).status_code == 200
    assert client.post(SYNC_EVENTS, json=site.batch(events[:2])).status_code == 200
    assert client.get(f"{ITEMS}/NOPE%2F1").status_code == 404
    after = samples(client)

    route = "/api/v1/sync/events"
    pushed = ("jxc_http_requests_total", "POST", route, "200")
    assert (
        value(after, pushed[0], method="POST", route=route, status="200")
        - value(before, pushed[0], method="POST", route=route, status="200")
        == 2
    )
    # The template, never the item code asked for.
    assert (
        value(
            after,
            "jxc_http_requests_total",
            method="GET",
            route="/api/v1/items/{item_code:path}",
            status="404",
        )
        >= 1
    )
    assert not any("NOPE" in str(key) for key in after)
    assert value(after, "jxc_http_request_duration_seconds_count", method="POST", route=route) >= 2
    for status, count in (("accepted", 3), ("duplicate", 2)):
        assert (
            value(after, "jxc_ingest_events_total", status=status)
            - value(before, "jxc_ingest_events_total", status=status)
            == count
        )
    assert value(after, "jxc_site_acked_through_seq", site="S07") == 3
    assert 0 <= value(after, "jxc_site_sync_lag_seconds", site="S07") < 3600
    assert value(after, "jxc_database_up") == 1
    assert value(after, "jxc_host_memory_bytes", kind="available") > 0
    assert value(after, "process_resident_memory_bytes") > 0


def test_readyz_wants_the_newest_schema(client: TestClient) -> None:
    """Behind: not ready (migrate first). Ahead, a newer central migrated mid-rollout:
    ready, saying so."""
    ready = client.get(READY)
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        # The database is shared by the worker's tests: put back exactly what was there.
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    try:
        for revision, code, said in (
            ("0016", 503, "jxc central migrate"),
            ("0099", 200, "schema is newer than this central (0099)"),
        ):
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
            answer = client.get(READY)
            assert answer.status_code == code
            assert said in answer.json()["message"]
        assert client.get("/healthz").status_code == 200, "alive all along"
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": current})


def test_metrics_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    settings = Settings(database_url=url, metrics_token="s3cret-for-prometheus-only")
    with central_app(settings) as app, TestClient(app) as client:
        assert client.get(METRICS).status_code == 401
        wrong = client.get(METRICS, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get(METRICS, headers={"Authorization": "Bearer s3cret-for-prometheus-only"})
        assert right.status_code == 200


def test_request_id_is_in_central_log_lines(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """What the edge sends as X-Request-ID is in central's access line for the push."""
    site = SiteLedger("S08")
    with caplog.at_level(logging.INFO, logger="central_api.access"):
        answer = client.post(
            SYNC_EVENTS, json=site.batch(site.receipts(1)), headers={"X-Request-ID": "edge-push-42"}
        )
    assert answer.headers["X-Request-ID"] == "edge-push-42"
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    access = [line for line in lines if line["msg"] == "request" and line["route"] == SYNC_EVENTS]
    assert access, "an access line for the push"
    assert access[-1]["request_id"] == "edge-push-42"
    assert access[-1]["status"] == 200


def test_metrics_say_when_the_database_is_gone(client: TestClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = client.app.state  # type: ignore[attr-defined]
    kept = state.engine
    state.engine = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere")
    try:
        assert value(samples(client), "jxc_database_up") == 0
    finally:
        state.engine.dispose()
        state.engine = kept
