"""Reconnecting: through a proxy that cuts every connection, and through a broker
restart on the same port. Delivery resumes on the same Subscription objects."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from conftest import WAIT, Broker, BrokerFactory, Proxy

from pubsub_client import (
    Client,
    ConnectionLostError,
    NotConnectedError,
    Subscription,
    SubscriptionClosed,
    Unauthorized,
    aio,
)

#: Fast retries for tests: first wait 20-40 ms, never more than 200 ms.
FAST = (0.04, 0.2)


class Events:
    """on_disconnect / on_reconnect / on_error, each as something to wait on."""

    def __init__(self) -> None:
        self.disconnected = threading.Event()
        self.reconnected = threading.Event()
        self.errors: list[Exception] = []
        self.reasons: list[Exception | None] = []

    def on_disconnect(self, reason: Exception | None) -> None:
        self.reasons.append(reason)
        self.disconnected.set()

    def on_reconnect(self) -> None:
        self.reconnected.set()

    def on_error(self, e: Exception) -> None:
        self.errors.append(e)


def client(addr: str, ev: Events, **kw: object) -> Client:
    return Client.connect(
        addr,
        timeout=WAIT,
        reconnect_wait=FAST,
        on_disconnect=ev.on_disconnect,
        on_reconnect=ev.on_reconnect,
        on_error=ev.on_error,
        **kw,  # type: ignore[arg-type]
    )


def test_proxy_cut_resumes_on_the_same_subscription(broker: Broker, proxy: Proxy) -> None:
    ev = Events()
    with client(proxy.addr, ev) as c, Client.connect(broker.addr, timeout=WAIT) as pub:
        sub = c.subscribe("news.>")
        overlap = c.subscribe("news.*")
        assert pub.publish("news.a", "before") == 1
        assert sub.next(WAIT).message == "before"
        assert overlap.next(WAIT).message == "before"
        proxy.cut()
        assert ev.disconnected.wait(WAIT)
        assert ev.reconnected.wait(WAIT)
        # on_reconnect came after every subscription was in place again.
        assert c.connected and c.reconnects == 1
        assert pub.publish("news.b", "after") == 1
        assert sub.next(WAIT).message == "after"
        assert overlap.next(WAIT).message == "after"
        assert proxy.accepted == 2
        assert c.ping() > 0


def test_call_in_flight_when_the_connection_breaks(broker: Broker, proxy: Proxy) -> None:
    ev = Events()
    with client(proxy.addr, ev) as c:
        proxy.pause()
        outcome: list[BaseException] = []
        t = threading.Thread(target=lambda: _capture(c.ping, outcome))
        t.start()
        assert proxy.held.wait(WAIT)  # the PING is stuck in the proxy
        proxy.cut()
        t.join(WAIT)
        assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLostError)
        # Whether the broker saw it is unknown; the client itself carries on.
        assert ev.reconnected.wait(WAIT)
        assert c.ping() > 0


def _capture(fn: Callable[[], object], into: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as e:
        into.append(e)


def test_subscribe_while_disconnected_waits_for_the_reconnect(broker: Broker) -> None:
    ev = Events()
    with client(broker.addr, ev) as c:
        port = broker.port
        broker.stop()
        assert ev.disconnected.wait(WAIT)
        subs: list[Subscription] = []
        t = threading.Thread(target=lambda: subs.append(c.subscribe("late", timeout=WAIT)))
        t.start()
        broker.start(port)
        t.join(WAIT)
        assert len(subs) == 1
        with Client.connect(broker.addr, timeout=WAIT) as pub:
            assert pub.publish("late", "made it") == 1
        assert subs[0].next(WAIT).message == "made it"


def test_gives_up_after_max_reconnect_attempts(broker: Broker) -> None:
    ev = Events()
    c = client(broker.addr, ev, max_reconnect_attempts=2)
    sub = c.subscribe("x")
    broker.stop()
    with pytest.raises(SubscriptionClosed):
        sub.next(WAIT)
    assert c.closed and not ev.reconnected.is_set()
    with pytest.raises(NotConnectedError, match="gave up"):
        c.publish("x", 1)
    c.close()


def test_broker_restart_on_the_same_port(broker: Broker) -> None:
    ev = Events()
    with client(broker.addr, ev, name="survivor") as c:
        sub = c.subscribe("orders.*")
        c.publish("orders.eu", 1)
        assert sub.next(WAIT).message == 1
        broker.restart()
        assert ev.disconnected.wait(WAIT)
        assert ev.reconnected.wait(WAIT)
        with Client.connect(broker.addr, timeout=WAIT) as pub:
            assert pub.publish("orders.us", 2) == 1
        assert sub.next(WAIT).message == 2
        assert sub.dropped == 0


def test_publish_while_disconnected_waits_then_fails(broker: Broker) -> None:
    ev = Events()
    with client(broker.addr, ev) as c:
        port = broker.port
        broker.stop()
        assert ev.disconnected.wait(WAIT)
        start = time.monotonic()
        with pytest.raises(NotConnectedError):
            c.publish("x", 1, timeout=0.2)
        assert 0.15 < time.monotonic() - start < WAIT
        with pytest.raises(NotConnectedError):
            c.publish("x", 1, ack=False, timeout=0.05)
        broker.start(port)
        # Waits for the reconnect within its timeout, then goes through.
        assert c.publish("x", 1, timeout=WAIT) == 0


def test_unauthorized_stops_reconnecting(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--token", "old")
    ev = Events()
    c = client(b.addr, ev, token="old")
    sub = c.subscribe("x")
    b.args = ["--token", "new"]
    b.restart()
    # The client gives up: its subscriptions end and calls fail at once.
    with pytest.raises(SubscriptionClosed):
        sub.next(WAIT)
    assert c.closed
    assert any(isinstance(e, Unauthorized) for e in ev.errors)
    with pytest.raises(NotConnectedError, match="unauthorized"):
        c.ping()
    c.close()


def test_reconnect_off_closes_for_good(broker: Broker, proxy: Proxy) -> None:
    ev = Events()
    c = client(proxy.addr, ev, reconnect=False)
    sub = c.subscribe("x")
    proxy.cut()
    with pytest.raises(SubscriptionClosed):
        sub.next(WAIT)
    assert c.closed and not ev.reconnected.is_set()
    c.close()


# ---------------------------------------------------------------- asyncio


class AioEvents:
    def __init__(self) -> None:
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()

    def on_disconnect(self, reason: Exception | None) -> None:
        self.disconnected.set()

    def on_reconnect(self) -> None:
        self.reconnected.set()


async def aio_client(addr: str, ev: AioEvents) -> aio.Client:
    return await aio.connect(
        addr,
        timeout=WAIT,
        reconnect_wait=FAST,
        on_disconnect=ev.on_disconnect,
        on_reconnect=ev.on_reconnect,
    )


async def test_aio_proxy_cut_resumes_on_the_same_subscription(broker: Broker, proxy: Proxy) -> None:
    ev = AioEvents()
    async with await aio_client(proxy.addr, ev) as c, await aio.connect(broker.addr) as pub:
        sub = await c.subscribe("news.>")
        assert await pub.publish("news.a", "before") == 1
        assert (await sub.next(WAIT)).message == "before"
        proxy.cut()
        await asyncio.wait_for(ev.disconnected.wait(), WAIT)
        await asyncio.wait_for(ev.reconnected.wait(), WAIT)
        assert c.connected and c.reconnects == 1
        assert await pub.publish("news.b", "after") == 1
        assert (await sub.next(WAIT)).message == "after"


async def test_aio_broker_restart_on_the_same_port(broker: Broker) -> None:
    ev = AioEvents()
    async with await aio_client(broker.addr, ev) as c:
        sub = await c.subscribe("orders.*")
        await asyncio.to_thread(broker.restart)
        await asyncio.wait_for(ev.disconnected.wait(), WAIT)
        await asyncio.wait_for(ev.reconnected.wait(), WAIT)
        async with await aio.connect(broker.addr) as pub:
            assert await pub.publish("orders.us", 2) == 1
        assert (await sub.next(WAIT)).message == 2


async def test_aio_publish_while_disconnected(broker: Broker) -> None:
    ev = AioEvents()
    async with await aio_client(broker.addr, ev) as c:
        port = broker.port
        await asyncio.to_thread(broker.stop)
        await asyncio.wait_for(ev.disconnected.wait(), WAIT)
        with pytest.raises(NotConnectedError):
            await c.publish("x", 1, timeout=0.2)
        await asyncio.to_thread(broker.start, port)
        assert await c.publish("x", 1, timeout=WAIT) == 0
