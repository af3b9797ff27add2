"""Zeroconf (mDNS/DNS-SD) discovery: central, edges, label printers and MQTT brokers.

A store's box should find its central on the shop's network without anyone typing a URL,
and a technician commissioning a dock wants to see which label printers and brokers are
there. Both are DNS-SD over multicast DNS, done by the ``zeroconf`` library (the same
wire format as Apple's Bonjour and Avahi, so printers and brokers that announce
themselves are seen, and ``avahi-browse`` sees jxc).

* central announces ``_jxc-central._tcp`` while ``jxc central serve`` runs;
* an edge announces ``_jxc-edge._tcp`` with its site id in the TXT record ``site``;
* an edge without ``[central] url`` browses for ``_jxc-central._tcp`` until it sees one;
* ``jxc device discover`` lists ``_pdl-datastream._tcp`` (raw port-9100 label printers)
  and ``_mqtt._tcp`` (brokers).

``JXC_DISCOVERY=off`` turns all of it off for the process and its children; the test suite
sets it, so no test ever sends multicast on the host's network (the discovery tests run in
a network namespace of their own and turn it back on there).

Only the ``zeroconf`` and ``ifaddr`` imports are deferred to the functions that need them:
the root ``jxc`` command imports this module's callers at every start.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroconf import ServiceInfo, ServiceStateChange, Zeroconf

log = logging.getLogger("jxc.discovery")

CENTRAL_TYPE = "_jxc-central._tcp.local."
EDGE_TYPE = "_jxc-edge._tcp.local."
PRINTER_TYPE = "_pdl-datastream._tcp.local."
MQTT_TYPE = "_mqtt._tcp.local."

SWITCH_ENV = "JXC_DISCOVERY"
_OFF = {"0", "off", "false", "no"}

RESOLVE_TIMEOUT_MS = 3000
"""How long one found name may take to answer with its address and port."""


def discovery_enabled() -> bool:
    """False when ``JXC_DISCOVERY`` says off: nothing is announced or browsed then."""
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in _OFF


@dataclass(frozen=True)
class Found:
    """One service seen on the network, resolved to where it answers."""

    service_type: str
    name: str
    """The instance name, without the service type (``jxc central on box``)."""
    host: str
    """The host's mDNS name (``box.local``)."""
    addresses: tuple[str, ...]
    port: int
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The address to connect to: the first IPv4 one if any, else the first."""
        for address in self.addresses:
            if ipaddress.ip_address(address).version == 4:
                return address
        return self.addresses[0]

    def url(self) -> str:
        """``scheme://address:port/path`` for an HTTP service (central, an edge)."""
        scheme = self.properties.get("scheme", "http")
        path = self.properties.get("path", "/")
        host = self.address
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}{path}".rstrip("/")

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.service_type.removesuffix(".local."),
            "name": self.name,
            "host": self.host,
            "address": self.address,
            "addresses": list(self.addresses),
            "port": self.port,
            "properties": dict(self.properties),
        }


def _found(info: ServiceInfo, service_type: str) -> Found | None:
    """A resolved ``info`` as :class:`Found`, or None if it has no address or port yet."""
    addresses = tuple(info.parsed_scoped_addresses())
    if not addresses or not info.port:
        return None
    properties = {
        key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
        for key, value in info.properties.items()
    }
    return Found(
        service_type=service_type,
        name=info.name.removesuffix("." + service_type),
        host=(info.server or "").rstrip("."),
        addresses=addresses,
        port=info.port,
        properties=properties,
    )


def _wildcard(host: str) -> bool:
    return host in {"", "0.0.0.0", "::"}  # noqa: S104 - the names of "every interface"


def advertised_addresses(bind_host: str) -> list[str]:
    """Where a service bound to ``bind_host`` can be reached, to put in its announcement.

    A service bound to one address is reachable there only. One bound to every interface
    is announced with each interface's IPv4 address; loopback is left out unless there is
    nothing else (a box with no network yet, or a test's network namespace), since a
    neighbour told "127.0.0.1" would connect to itself.
    """
    if not _wildcard(bind_host):
        return [bind_host]
    import ifaddr  # noqa: PLC0415

    found = [
        str(ip.ip)
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str)
    ]
    outside = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    return sorted(set(outside or found))


def _interfaces(bind_host: str) -> Any:
    """Announce on the bound address's interface only, or on all of them."""
    from zeroconf import InterfaceChoice  # noqa: PLC0415

    return InterfaceChoice.All if _wildcard(bind_host) else [bind_host]


def _label(text: str, limit: int = 63) -> str:
    """``text`` cut to a DNS label's 63 bytes without splitting a UTF-8 character."""
    raw = text.encode("utf-8")[:limit]
    return raw.decode("utf-8", "ignore")


class Advertisement:
    """One service announced on the network until :meth:`close`.

    The announcement is made on a thread of its own: registering probes the network for a
    name clash first (about 1.5 s), and a service must not start that much later for it.
    A clash with another instance of the same name gets a numbered name (``... (2)``).
    """

    def __init__(
        self,
        service_type: str,
        instance: str,
        port: int,
        *,
        bind_host: str,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.service_type = service_type
        self.instance = _label(instance)
        self.port = port
        self.bind_host = bind_host
        self.properties = dict(properties or {})
        self.error: Exception | None = None
        self._zeroconf: Zeroconf | None = None
        self._info: ServiceInfo | None = None
        self._registered = threading.Event()
        self._thread = threading.Thread(
            target=self._register, name=f"announce-{service_type}", daemon=True
        )

    def start(self) -> Advertisement:
        self._thread.start()
        return self

    def wait_registered(self, timeout_s: float) -> bool:
        """True once the announcement is out (for tests and start-up logs)."""
        return self._registered.wait(timeout_s)

    def _register(self) -> None:
        from zeroconf import ServiceInfo, Zeroconf  # noqa: PLC0415

        try:
            addresses = advertised_addresses(self.bind_host)
            hostname = _label(socket.gethostname().split(".")[0] or "jxc")
            self._info = ServiceInfo(
                self.service_type,
                f"{self.instance}.{self.service_type}",
                port=self.port,
                properties=self.properties,
                server=f"{hostname}.local.",
                parsed_addresses=addresses,
            )
            self._zeroconf = Zeroconf(interfaces=_interfaces(self.bind_host))
            self._zeroconf.register_service(self._info, allow_name_change=True)
        except Exception as exc:  # an agent without a network still works: say so, go on
            self.error = exc
            log.warning(
                "cannot announce the service on the network",
                extra={"service": self.service_type, "error": str(exc)},
            )
            return
        self._registered.set()
        log.info(
            "announced on the network",
            extra={
                "service": self.service_type,
                "instance": self._info.name,
                "addresses": addresses,
                "port": self.port,
            },
        )

    def close(self) -> None:
        """Say goodbye on the network (browsers drop us at once) and stop."""
        self._thread.join()
        if self._zeroconf is None:
            return
        zeroconf, self._zeroconf = self._zeroconf, None
        try:
            if self._info is not None and self._registered.is_set():
                zeroconf.unregister_service(self._info)
                log.info("announcement withdrawn", extra={"instance": self._info.name})
        finally:
            zeroconf.close()


class Browser:
    """Watch the network for services of some types; ``on_found`` gets each one resolved.

    Runs until :meth:`close`, so a service that appears later is seen too. ``on_found`` is
    called from zeroconf's browser thread, once per name (again if it leaves and returns).
    """

    def __init__(self, service_types: Iterable[str], on_found: Callable[[Found], None]) -> None:
        from zeroconf import ServiceBrowser, Zeroconf  # noqa: PLC0415

        self._on_found = on_found
        self._zeroconf = Zeroconf()
        self._browser = ServiceBrowser(
            self._zeroconf, list(service_types), handlers=[self._changed]
        )

    def _changed(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        from zeroconf import ServiceStateChange  # noqa: PLC0415

        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
        found = None if info is None else _found(info, service_type)
        if found is None:
            log.info("a service did not say where it is", extra={"instance": name})
            return
        try:
            self._on_found(found)
        except Exception:  # a bad callback must not kill zeroconf's browser thread
            log.exception("discovery callback failed", extra={"instance": name})

    def close(self) -> None:
        self._browser.cancel()
        self._zeroconf.close()


def browse(service_types: Iterable[str], wait_s: float) -> list[Found]:
    """Every service of ``service_types`` seen within ``wait_s`` seconds, sorted."""
    seen: dict[tuple[str, str], Found] = {}
    lock = threading.Lock()

    def keep(found: Found) -> None:
        with lock:
            seen[(found.service_type, found.name)] = found

    browser = Browser(service_types, keep)
    try:
        time.sleep(wait_s)
    finally:
        browser.close()
    with lock:
        return sorted(seen.values(), key=lambda f: (f.service_type, f.name))


class CentralFinder:
    """Looks for ``_jxc-central._tcp`` until one answers, then keeps the first one seen.

    With two centrals on one network, which answers first is chance; the first is used,
    every other one is logged as ignored (a site with two must name its central in
    ``[central] url``). The finder keeps watching, only to say so.
    """

    def __init__(self, on_found: Callable[[str], None] | None = None) -> None:
        self.url: str | None = None
        self.found: Found | None = None
        self._on_found = on_found
        self._known = threading.Event()
        self._lock = threading.Lock()
        self._browser = Browser([CENTRAL_TYPE], self._seen)

    def _seen(self, found: Found) -> None:
        url = found.url()
        with self._lock:
            first = self.url is None
            if first:
                self.url, self.found = url, found
            kept = self.url
        if not first:
            if url != kept:
                log.warning(
                    "another central is announced on the network; ignored",
                    extra={"ignored": url, "instance": found.name, "using": kept},
                )
            return
        log.info("central found on the network", extra={"url": url, "instance": found.name})
        if self._on_found is not None:
            self._on_found(url)
        self._known.set()

    def wait(self, timeout_s: float) -> str | None:
        """The central's URL once one is found, or None after ``timeout_s`` seconds."""
        self._known.wait(timeout_s)
        return self.url

    def close(self) -> None:
        self._browser.close()
