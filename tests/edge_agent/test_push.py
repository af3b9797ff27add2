"""The push job against the real central app in-process: marks synced only on ack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, update

from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.models import stock_balances
from central_api.services import auth as central_auth
from central_api.services.auth import add_site, rotate_site
from edge_agent.auth import SiteTokenAuth, read_secret
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.sync import Pusher
from jxc.contract import EventKind, EventResult, EventStatus, PushAck
from jxc.paths import STOCK, SYNC_EVENTS, SYNC_REFUSED
from tests.central.conftest import central_app
from tests.patience import wait_for


def receipt(qty: str, lot: str = "L1") -> EventDraft:
    return EventDraft(
        kind=EventKind.RECEIPT,
        item="ITEM-1",
        lot=lot,
        location="DOCK-1",
        qty=Decimal(qty),
        uom="EA",
    )


@pytest.fixture
def central(tmp_path: Path) -> Iterator[TestClient]:
    """The real central app, with site S01 registered and the edge's own token auth on."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    with central_app(Settings(database_url=url)) as app, TestClient(app) as client:
        with app.state.engine.connect() as connection:
            client.auth = SiteTokenAuth("S01", add_site(connection, "S01"))
        yield client


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def stock(central: TestClient) -> dict[str | None, Decimal]:
    rows = central.get(STOCK, params={"site_id": "S01"}).json()
    return {row["lot"]: Decimal(row["qty"]) for row in rows}


def test_push_drains_outbox_in_batches(central: TestClient, ledger: Ledger) -> None:
    for i in range(10):
        ledger.append(receipt("1.25", lot=f"L{i % 3}"))
    pusher = Pusher(ledger, central, batch_size=3)
    pusher.run()
    counts = ledger.counts()
    assert (counts.pending, counts.synced_through) == (0, 10)
    assert stock(central) == {"L0": Decimal("5"), "L1": Decimal("3.75"), "L2": Decimal("3.75")}
    assert pusher.state.events_pushed == 10
    assert pusher.state.clock_skew_s is not None
    assert abs(pusher.state.clock_skew_s) < 5


def test_lost_ack_resend_changes_nothing(central: TestClient, ledger: Ledger) -> None:
    """Central committed but the edge never heard: the resend is a duplicate, not a double."""
    for _ in range(4):
        ledger.append(receipt("2"))
    batch_json = Pusher(ledger, central).ledger.pending(10)
    first = central.post(
        SYNC_EVENTS,
        json={"site_id": "S01", "events": [e.model_dump(mode="json") for e in batch_json]},
    )
    assert first.status_code == 200
    assert ledger.counts().pending == 4, "the ack was lost: the edge still holds them"
    Pusher(ledger, central).run()
    assert ledger.counts().pending == 0
    assert stock(central) == {"L1": Decimal("8")}


def test_central_unreachable_keeps_everything_and_backs_off(ledger: Ledger) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(base_url="http://central.invalid", transport=httpx.MockTransport(refuse))
    ledger.append(receipt("1"))
    pusher = Pusher(ledger, client, max_backoff_s=0.01)
    pusher.run()
    assert ledger.counts().pending == 1
    assert pusher.state.consecutive_failures == 1
    assert "unreachable" in (pusher.state.last_error or "")


def test_server_error_is_not_an_ack(ledger: Ledger) -> None:
    client = httpx.Client(
        base_url="http://central.test",
        transport=httpx.MockTransport(lambda _: httpx.Response(503, json={"detail": "db down"})),
    )
    ledger.append(receipt("1"))
    pusher = Pusher(ledger, client, max_backoff_s=0.01)
    pusher.push_once()
    assert ledger.counts().pending == 1
    assert "503" in (pusher.state.last_error or "")


def test_413_halves_the_batch_until_it_fits(central: TestClient, ledger: Ledger) -> None:
    """A proxy in front of central caps bodies at 4 events: the pusher adapts, loses nothing."""
    for _ in range(10):
        ledger.append(receipt("1"))
    sizes: list[int] = []

    def capped(request: httpx.Request) -> httpx.Response:
        count = request.content.count(b'"event_id"')
        sizes.append(count)
        if count > 4:
            return httpx.Response(413, text="request entity too large")
        forwarded = central.post(
            SYNC_EVENTS,
            content=request.content,
            headers={"content-type": "application/json"},
        )
        return httpx.Response(forwarded.status_code, content=forwarded.content)

    client = httpx.Client(base_url="http://central.test", transport=httpx.MockTransport(capped))
    pusher = Pusher(ledger, client, batch_size=10)
    pusher.run()
    assert ledger.counts().pending == 0
    assert sizes[:2] == [10, 5]
    assert max(sizes[2:]) <= 4
    assert stock(central) == {"L1": Decimal("10")}


def test_second_pusher_on_the_same_ledger_does_not_send(
    central: TestClient, ledger: Ledger
) -> None:
    ledger.append(receipt("1"))
    first = Pusher(ledger, central, lease_holder="agent-a")
    second = Pusher(ledger, central, lease_holder="agent-b")
    calls: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(500)

    first.run()
    ledger.append(receipt("1"))
    second.client = httpx.Client(base_url="http://x", transport=httpx.MockTransport(record))
    second.run()
    assert calls == [], "the second agent must not send while the first holds the lease"
    assert not second.state.is_sender
    first.release()
    second.client = central
    second.run()
    assert second.state.is_sender
    assert ledger.counts().pending == 0


def test_a_lapsed_lease_is_not_claimed_and_holds_never_overlap(
    central: TestClient, ledger: Ledger
) -> None:
    """A late run (busy machine) must not go on claiming a lease a standby may have taken:
    labels are printed only by the sender."""
    ledger.append(receipt("1"))
    first = Pusher(ledger, central, lease_holder="agent-a", lease_ttl_s=0.3)
    second = Pusher(ledger, central, lease_holder="agent-b", lease_ttl_s=0.3)
    first.run()
    assert first.state.is_sender
    held = first.state.as_dict()
    assert held["sender_since"] <= held["sender_until"]
    assert wait_for(lambda: not first.state.is_sender), "the first lease lapses"
    assert first.state.as_dict()["sender_until"] is None
    # The ledger's expiry is a few microseconds later than the one the first agent keeps.
    assert wait_for(lambda: second.run() or second.state.is_sender), "the standby takes over"
    assert not first.state.is_sender
    assert second.state.as_dict()["sender_since"] >= held["sender_until"]
    first.run()
    assert not first.state.is_sender, "the standby holds it now"


def test_clock_skew_beyond_threshold_raises_an_alert(central: TestClient, ledger: Ledger) -> None:
    """Central's clock runs 300 s ahead of ours (as a drifting edge clock would look)."""
    offset = {"s": 300.0}

    def skewed(request: httpx.Request) -> httpx.Response:
        answer = central.post(
            SYNC_EVENTS,
            content=request.content,
            headers={"content-type": "application/json"},
        ).json()
        server_time = datetime.fromisoformat(answer["server_time"])
        answer["server_time"] = (server_time + timedelta(seconds=offset["s"])).isoformat()
        return httpx.Response(200, json=answer)

    client = httpx.Client(base_url="http://central.test", transport=httpx.MockTransport(skewed))
    pusher = Pusher(ledger, client, max_clock_skew_s=120)
    ledger.append(receipt("1"))
    pusher.run()
    assert pusher.state.clock_skew_s is not None
    assert -301 < pusher.state.clock_skew_s < -299
    assert any("clock skew" in alert for alert in pusher.state.alerts)
    offset["s"] = 0.0
    ledger.append(receipt("1"))
    pusher.run()
    assert pusher.state.alerts == [], "the alert clears once the clocks agree again"


def test_a_refused_event_is_parked_and_the_rest_flow_on(
    central: TestClient, ledger: Ledger, tmp_path: Path
) -> None:
    """Central refuses seq 2 (a unit its balance is not kept in): it becomes a dead letter,
    seqs 3.. reach central, and once headquarters fixes the cause a requeue books it."""
    ledger.append(receipt("10"))
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT,
            item="ITEM-1",
            lot="L1",
            location="DOCK-1",
            qty=Decimal(1),
            uom="BOX",
        )
    )
    for _ in range(3):
        ledger.append(receipt("1"))
    pusher = Pusher(ledger, central, batch_size=2)
    pusher.run()

    counts = ledger.counts()
    assert (counts.pending, counts.dead, counts.synced_through) == (0, 1, 5)
    assert stock(central) == {"L1": Decimal(13)}
    assert pusher.state.rejected == {"invalid": 1}
    [letter] = ledger.dead_letters()
    assert letter.seq == 2
    assert "counted in EA, not BOX" in (letter.detail or "")
    refused = central.get(SYNC_REFUSED, params={"site_id": "S01"}).json()
    assert [row["seq"] for row in refused] == [2]

    ledger.append(receipt("1"))
    assert ledger.requeue() == [2]
    pusher.run()  # central still refuses: back to the dead letters, seq 6 goes through
    assert (ledger.counts().dead, ledger.counts().pending) == (1, 0)
    assert stock(central) == {"L1": Decimal(14)}

    engine = create_engine(f"sqlite:///{tmp_path / 'central.db'}")
    with engine.begin() as connection:  # headquarters decides the lot is kept in boxes
        connection.execute(update(stock_balances).values(uom="BOX"))
    engine.dispose()
    ledger.requeue([2])
    pusher.run()
    counts = ledger.counts()
    assert (counts.pending, counts.dead, counts.synced_through) == (0, 0, 6)
    assert stock(central) == {"L1": Decimal(15)}
    assert central.get(SYNC_REFUSED, params={"site_id": "S01"}).json() == []


def test_an_answer_without_a_result_for_an_event_does_not_settle_it(ledger: Ledger) -> None:
    """A central (or a proxy) that answers for fewer events than were sent: those it left
    out stay in the outbox, whatever its watermark says."""
    for _ in range(3):
        ledger.append(receipt("1"))
    events = ledger.pending(10)

    def partial(_: httpx.Request) -> httpx.Response:
        ack = PushAck(
            site_id="S01",
            acked_through_seq=3,
            results=[
                EventResult(event_id=e.event_id, seq=e.seq, status=EventStatus.ACCEPTED)
                for e in events[:1] + events[2:]
            ],
            server_time=datetime.now(UTC),
        )
        return httpx.Response(200, content=ack.model_dump_json())

    client = httpx.Client(base_url="http://central.test", transport=httpx.MockTransport(partial))
    Pusher(ledger, client).push_once()
    assert [e.seq for e in ledger.pending(10)] == [2, 3]


def test_one_token_serves_many_pushes(central: TestClient, ledger: Ledger) -> None:
    auth = central.auth
    assert isinstance(auth, SiteTokenAuth)
    for _ in range(5):
        ledger.append(receipt("1"))
        Pusher(ledger, central).push_once()
    assert ledger.counts().pending == 0
    assert auth.tokens_issued == 1


def test_a_token_central_no_longer_takes_is_renewed_and_the_push_retried(
    central: TestClient, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Central's clock has passed the token's expiry before the edge expected: one 401,
    a new token, the same request again, and the events are synced."""
    auth = central.auth
    assert isinstance(auth, SiteTokenAuth)
    ledger.append(receipt("1"))
    Pusher(ledger, central).push_once()
    later = datetime.now(UTC).timestamp() + 3600
    monkeypatch.setattr(central_auth.time, "time", lambda: later)
    ledger.append(receipt("2"))
    pusher = Pusher(ledger, central)
    assert pusher.push_once() is True
    assert ledger.counts().pending == 0
    assert auth.tokens_issued == 2
    assert stock(central) == {"L1": Decimal("3")}


def test_a_refused_credential_keeps_every_event_and_says_why(
    central: TestClient, ledger: Ledger
) -> None:
    """The secret was rotated at central and the edge still has the old one."""
    with central.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        new_secret = rotate_site(connection, "S01")
    for _ in range(3):
        ledger.append(receipt("1"))
    pusher = Pusher(ledger, central, max_backoff_s=0.01)
    assert pusher.push_once() is False
    assert ledger.counts().pending == 3
    assert pusher.state.last_error is not None
    assert "401" in pusher.state.last_error
    assert "credential refused" in pusher.state.last_error
    assert any(a.startswith("central refuses this site's credential") for a in pusher.state.alerts)

    central.auth = SiteTokenAuth("S01", new_secret)  # the operator fixed the secret file
    assert pusher.push_once() is True
    assert ledger.counts().pending == 0
    assert pusher.state.alerts == []


def test_an_edge_without_a_secret_is_told_to_get_one(central: TestClient, ledger: Ledger) -> None:
    central.auth = httpx.Auth()  # no credentials at all
    ledger.append(receipt("1"))
    pusher = Pusher(ledger, central)
    assert pusher.push_once() is False
    assert ledger.counts().pending == 1
    assert "POST /api/v1/sync/token" in (pusher.state.last_error or "")


def test_a_rotated_secret_put_in_the_file_is_picked_up_without_a_restart(
    central: TestClient, ledger: Ledger, tmp_path: Path
) -> None:
    secret_file = tmp_path / "S01.secret"
    with central.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        secret_file.write_text(rotate_site(connection, "S01") + "\n")
        first = secret_file.read_text().strip()
        central.auth = SiteTokenAuth("S01", first, reload=partial(read_secret, secret_file))
        ledger.append(receipt("1"))
        assert Pusher(ledger, central).push_once() is True
        secret_file.write_text(rotate_site(connection, "S01") + "\n")  # the operator's fix
    ledger.append(receipt("1"))  # the old token is refused (401), so is the old secret
    assert Pusher(ledger, central).push_once() is True
    assert ledger.counts().pending == 0


def test_the_token_is_fetched_below_central_s_base_path(ledger: Ledger) -> None:
    """Central mounted at https://hq.example/jxc: the token comes from /jxc/api/v1/..."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/sync/token"):
            return httpx.Response(
                200, json={"site_id": "S01", "access_token": "t", "expires_in": 900}
            )
        return httpx.Response(503)

    client = httpx.Client(
        base_url="http://hq.example/jxc",
        transport=httpx.MockTransport(answer),
        auth=SiteTokenAuth("S01", "s" * 43),
    )
    ledger.append(receipt("1"))
    Pusher(ledger, client).push_once()
    assert seen == ["/jxc/api/v1/sync/token", "/jxc/api/v1/sync/events"]
