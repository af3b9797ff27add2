"""The MQTT twins seen from a plain MQTT client: what they publish is what the message
definitions say, with no driver in between to hide a twin's mistake."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulators.mqtt_devices import GARBAGE, GS, MqttScaleTwin, MqttScannerTwin
from tests.mqtt_broker import (
    Broker,
    broker_fixture,
    eventually,
    mqtt_broker_fixture,
    no_leaks_fixture,
)
from tests.patience import patience_timeout

__all__ = ["broker_fixture", "mqtt_broker_fixture", "no_leaks_fixture"]  # used by name


class Listener:
    """A subscriber that keeps every message, per topic, in arrival order."""

    def __init__(self, broker: Broker, topic: str, *, persistent: bool = False) -> None:
        """``persistent``: a session the broker keeps (and saves across its restart), so
        what is published while this listener is away (a broker outage) is still owed to
        it when it is back; it retries the broker every second meanwhile."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"l-{uuid.uuid4().hex}",
            clean_session=not persistent,
        )
        if persistent:
            self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_message = self._received
        self._client.on_subscribe = lambda *args: self._ready.set()
        self._client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._ready.wait(patience_timeout(10))

    def _received(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(patience_timeout(5))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client.reinitialise()  # paho's wake-up socket pair


@pytest.fixture
def device_id() -> str:
    return f"twin-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def listen(broker: Broker, no_mqtt_leaks: None) -> Iterator[type[Listener]]:
    made: list[Listener] = []

    class Made(Listener):
        def __init__(self, broker_: Broker, topic: str, *, persistent: bool = False) -> None:
            super().__init__(broker_, topic, persistent=persistent)
            made.append(self)

    yield Made
    for listener in made:
        listener.close()


@pytest.mark.timeout(60)
def test_scanner_twin_publishes_json_raw_and_faults(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    listener = listen(broker, f"jxc/scanners/{device_id}/#")
    with MqttScannerTwin(device_id, port=broker.port) as twin:
        assert twin.wait_connected(patience_timeout(10))
        twin.scan(f"0109506000134352{GS}10LOT", "]C1")
        twin.scan("ABC", "]E0", shape="raw")
        twin.send_garbage()
        twin.send_truncated("0109506000134352", "]C1")
        twin.drop_gs()
        twin.scan(f"10LOT{GS}17270300", "]C1")
        eventually(lambda: len(listener.payloads("/scan")) == 5, within=10, what="5 scans")
    scans = listener.payloads("/scan")
    assert json.loads(scans[0]) == {"data": f"0109506000134352{GS}10LOT", "symbology": "]C1"}
    assert scans[1] == b"]E0ABC"
    assert scans[2] == GARBAGE
    with pytest.raises(json.JSONDecodeError):
        json.loads(scans[3])
    assert json.loads(scans[4])["data"] == "10LOT17270300"
    eventually(lambda: listener.payloads("/availability")[-1:] == [b"offline"], within=10)
    assert listener.payloads("/availability")[0] == b"online"


@pytest.mark.timeout(60)
def test_abrupt_disconnect_fires_the_last_will_and_the_twin_comes_back(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    listener = listen(broker, f"jxc/scanners/{device_id}/availability")
    with MqttScannerTwin(device_id, port=broker.port) as twin:
        assert twin.wait_connected(patience_timeout(10))
        twin.disconnect(seconds=0.5, abrupt=True)
        eventually(lambda: b"offline" in listener.payloads("/availability"), within=10)
        eventually(lambda: listener.payloads("/availability")[-1:] == [b"online"], within=10)
        said = [key for key, _ in itertools.groupby(listener.payloads("/availability"))]
        assert said == [b"online", b"offline", b"online"]  # a QoS 1 resend may repeat one


@pytest.mark.timeout(90)
def test_scanner_twin_keeps_reads_through_a_broker_outage(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    with MqttScannerTwin(device_id, port=broker.port) as twin:
        assert twin.wait_connected(patience_timeout(10))
        # Subscribed before the outage, in a session the broker keeps: the twin may be back
        # and send what it owes before a listener made after the outage had subscribed.
        listener = listen(broker, f"jxc/scanners/{device_id}/scan", persistent=True)
        with broker.down():
            eventually(lambda: not twin.connected, within=5)
            twin.scan("DURING")
        twin.scan("AFTER")
        eventually(lambda: len(listener.payloads("/scan")) == 2, within=10, what="both")
    assert [json.loads(p)["data"] for p in listener.payloads("/scan")] == ["DURING", "AFTER"]


@pytest.mark.timeout(60)
def test_scale_twin_streams_wobbles_settles_and_overloads(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    listener = listen(broker, f"jxc/scales/{device_id}/weight")
    with MqttScaleTwin(device_id, port=broker.port, weight=Decimal("2.5")) as twin:
        assert twin.wait_connected(patience_timeout(10))
        eventually(lambda: len(listener.payloads("/weight")) >= 3, within=10)
        first = json.loads(listener.payloads("/weight")[0])
        assert {k: first[k] for k in ("net", "gross", "tare", "unit", "stable", "status")} == {
            "net": "2.500",
            "gross": "2.500",
            "tare": "0.000",
            "unit": "kg",
            "stable": True,
            "status": "ok",
        }
        assert datetime.datetime.fromisoformat(first["ts"]).tzinfo is not None
        seen = len(listener.payloads("/weight"))
        twin.wobble(0.5)
        eventually(lambda: len(listener.payloads("/weight")) >= seen + 15, within=10)
        after = [json.loads(p) for p in listener.payloads("/weight")[seen:]]
        moving = [m for m in after if not m["stable"]]
        assert moving, "a wobble shows as unstable readings"
        assert all(m["net"] != "2.500" for m in moving)
        assert after[-1] == {**after[-1], "net": "2.500", "stable": True}
        twin.overload()
        eventually(lambda: b'"overload"' in listener.payloads("/weight")[-1], within=10)
        assert "net" not in json.loads(listener.payloads("/weight")[-1])


@pytest.mark.timeout(60)
def test_scale_twin_answers_commands_and_ignores_expired_ones(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    listener = listen(broker, f"jxc/scales/{device_id}/reply")
    base = f"jxc/scales/{device_id}"

    def command(name: str, seconds: float, command_id: str) -> None:
        """Publish a command valid for ``seconds`` (stretched by patience when positive)."""
        valid = patience_timeout(seconds) if seconds > 0 else seconds
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=valid)
        body = {"id": command_id, "command": name, "expires_at": expires.isoformat()}
        listener.publish(f"{base}/command", json.dumps(body).encode())

    with MqttScaleTwin(device_id, port=broker.port, weight=Decimal("1.25")) as twin:
        assert twin.wait_connected(patience_timeout(10))
        command("tare", 5, "a")
        eventually(lambda: len(listener.payloads("/reply")) == 1, within=10)
        assert json.loads(listener.payloads("/reply")[0]) == {
            "id": "a",
            "ok": True,
            "tare": "1.250",
            "unit": "kg",
        }
        command("zero", -1, "expired")
        twin.unsupported("zero")
        command("zero", 5, "b")
        eventually(lambda: len(listener.payloads("/reply")) == 2, within=10)
        reply = json.loads(listener.payloads("/reply")[1])
        assert (reply["id"], reply["ok"], reply["error"]) == ("b", False, "unsupported")
        twin.clear_faults()
        twin.set_reply_delay(0.5)
        command("clear_tare", 5, "c")
        eventually(lambda: len(listener.payloads("/reply")) == 3, within=10)
        assert json.loads(listener.payloads("/reply")[2]) == {"id": "c", "ok": True}
        assert [c["id"] for c in twin.commands] == ["a", "expired", "b", "c"]


@pytest.mark.timeout(60)
def test_a_twin_is_connected_only_once_it_listens(
    broker: Broker, listen: type[Listener], device_id: str
) -> None:
    """A command published the moment wait_connected() returns is heard: the twin says it is
    connected (and ``online``) only after the broker acknowledged its subscriptions."""
    listener = listen(broker, "jxc/scales/+/reply")
    for attempt in range(5):
        name = f"{device_id}-{attempt}"
        with MqttScaleTwin(name, port=broker.port, weight=Decimal(1)) as twin:
            assert twin.wait_connected(patience_timeout(10))
            expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=patience_timeout(5)
            )
            body = {"id": name, "command": "zero", "expires_at": expires.isoformat()}
            listener.publish(f"jxc/scales/{name}/command", json.dumps(body).encode())
            eventually(
                lambda name=name: any(  # type: ignore[misc]
                    json.loads(p)["id"] == name for p in listener.payloads("/reply")
                ),
                within=10,
                what=f"the reply of twin {attempt}",
            )
