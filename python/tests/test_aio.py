"""The asyncio client against the real broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import pytest
from conftest import WAIT, Broker, BrokerFactory

from pubsub_client import (
    BadChannel,
    BadField,
    BadJson,
    FrameTooLarge,
    Limit,
    LocalSlowConsumer,
    Message,
    NotConnectedError,
    SubscriptionClosed,
    Unauthorized,
    UnknownCommand,
)
from pubsub_client.aio import Client, connect

E = TypeVar("E", bound=Exception)


class Errors:
    """Collects what ``on_error`` reports; ``wait`` returns the first of a class."""

    def __init__(self) -> None:
        self.seen: list[Exception] = []
        self.changed = asyncio.Event()

    def __call__(self, e: Exception) -> None:
        self.seen.append(e)
        self.changed.set()

    async def wait(self, cls: type[E]) -> E:
        async def first() -> E:
            while True:
                for e in self.seen:
                    if isinstance(e, cls):
                        return e
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(first(), WAIT)


async def open_client(broker: Broker, **kw: Any) -> Client:
    kw.setdefault("timeout", WAIT)
    return await connect(broker.addr, **kw)


async def test_round_trip_and_receivers(broker: Broker) -> None:
    async with await open_client(broker) as a, await open_client(broker) as b:
        sub = await a.subscribe("news.>")
        assert await b.publish("news.a", {"x": 1}) == 1
        msg = await sub.next(timeout=WAIT)
        assert msg == Message("news.a", {"x": 1}, "news.>")
        assert await b.publish("nobody", 1) == 0


async def test_async_for_until_unsubscribed(broker: Broker) -> None:
    async with await open_client(broker) as c:
        sub = await c.subscribe("it")

        async def consume() -> list[object]:
            return [m.message async for m in sub]

        task = asyncio.create_task(consume())
        for i in range(3):
            await c.publish("it", i)
        await c.ping()
        await sub.unsubscribe()
        assert await asyncio.wait_for(task, WAIT) == [0, 1, 2]


async def test_overlapping_local_subscriptions(broker: Broker) -> None:
    async with await open_client(broker) as c:
        star = await c.subscribe("a.*")
        rest = await c.subscribe("a.>")
        again = await c.subscribe("a.*")
        assert (await c.stats())["router"]["wildcard_subscriptions"] == 2
        assert await c.publish("a.b", "hi") == 1
        for s in (star, rest, again):
            assert (await s.next(WAIT)).message == "hi"
        await star.unsubscribe()
        assert (await c.stats())["router"]["wildcard_subscriptions"] == 2
        await again.unsubscribe()
        assert (await c.stats())["router"]["wildcard_subscriptions"] == 1
        with pytest.raises(SubscriptionClosed):
            await again.next(0)


async def test_callbacks_plain_and_async(broker: Broker) -> None:
    async with await open_client(broker) as c:
        plain: list[object] = []
        awaited: list[object] = []
        done = asyncio.Event()

        async def slow(m: Message) -> None:
            await asyncio.sleep(0)
            awaited.append(m.message)
            if len(awaited) == 3:
                done.set()

        await c.subscribe("cb", callback=lambda m: plain.append(m.message))
        await c.subscribe("cb", callback=slow)
        for i in range(3):
            await c.publish("cb", i)
        await asyncio.wait_for(done.wait(), WAIT)
        assert awaited == [0, 1, 2]
        assert plain == [0, 1, 2]


async def test_echo_off(broker: Broker) -> None:
    async with await open_client(broker, echo=False) as quiet, await open_client(broker) as other:
        own = await quiet.subscribe("room")
        await other.subscribe("room")
        assert await quiet.publish("room", "mine") == 1
        await other.publish("room", "theirs")
        assert (await own.next(WAIT)).message == "theirs"
        await quiet.ping()
        assert own.pending == 0


async def test_error_codes(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--max-subscriptions", "1", "--token", "t")
    errors = Errors()
    with pytest.raises(Unauthorized):
        await open_client(b, token="wrong")
    async with await open_client(b, token="t", on_error=errors) as c:
        with pytest.raises(BadChannel):
            await c.publish("a..b", 1)
        with pytest.raises(UnknownCommand):
            await c.request({"command": "NOPE"})
        with pytest.raises(BadField):
            await c.request({"command": "PUBLISH", "channel": "x"})
        await c.subscribe("one")
        with pytest.raises(Limit):
            await c.subscribe("two")
        writer = await c._wait_connected(time.monotonic() + WAIT)
        await c._send(writer, b"{not json\n")
        assert (await errors.wait(BadJson)).code == "bad_json"
        assert await c.ping() > 0


async def test_ack_off_and_ping(broker: Broker) -> None:
    async with await open_client(broker) as c:
        sub = await c.subscribe("fast")
        assert await c.publish("fast", "x", ack=False) is None
        assert (await sub.next(WAIT)).message == "x"
        rtt = await c.ping()
        assert isinstance(rtt, float) and 0 < rtt < WAIT


async def test_frame_too_large_is_refused_locally(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--max-frame", "1024")
    async with await open_client(b) as c:
        assert c.max_frame == 1024
        with pytest.raises(FrameTooLarge):
            await c.publish("big", "x" * 2000)
        with pytest.raises(FrameTooLarge):
            await c.publish("big", "x" * 2000, ack=False)
        assert (await c.stats())["errors"].get("frame_too_large", 0) == 0


async def test_next_times_out(broker: Broker) -> None:
    async with await open_client(broker) as c:
        sub = await c.subscribe("quiet")
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.05)


async def test_slow_local_consumer_drops_and_reports(broker: Broker) -> None:
    errors = Errors()
    async with await open_client(broker, queue_size=10, on_error=errors) as c:
        slow = await c.subscribe("load")
        for i in range(50):
            await c.publish("load", i, ack=False)
        await c.ping()
        assert slow.pending == 10
        assert slow.dropped == 40
        report = await errors.wait(LocalSlowConsumer)
        assert isinstance(report, LocalSlowConsumer) and report.subscription is slow
        assert [(await slow.next(WAIT)).message for _ in range(10)] == list(range(10))


async def test_ten_thousand_messages_in_order(broker: Broker) -> None:
    n = 10_000
    async with await open_client(broker) as s, await open_client(broker) as p:
        sub = await s.subscribe("seq")
        for i in range(n):
            await p.publish("seq", i, ack=False)
        await p.ping()
        got = [(await sub.next(WAIT)).message for _ in range(n)]
        assert got == list(range(n))


async def test_close(broker: Broker) -> None:
    c = await open_client(broker)
    sub = await c.subscribe("x")
    await c.close()
    await c.close()
    assert c.closed
    with pytest.raises(NotConnectedError):
        await c.publish("x", 1)
    assert [m async for m in sub] == []
