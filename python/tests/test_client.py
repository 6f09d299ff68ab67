"""The blocking client against the real broker."""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

import pytest
from conftest import WAIT, Broker, BrokerFactory

from pubsub_client import (
    BadChannel,
    BadField,
    BadFrame,
    BadJson,
    BrokerError,
    Client,
    FrameTooLarge,
    Limit,
    LocalSlowConsumer,
    Message,
    NotConnectedError,
    SlowConsumer,
    Stale,
    SubscriptionClosed,
    Unauthorized,
    UnknownCommand,
)
from pubsub_client.errors import error_from_frame

E = TypeVar("E", bound=Exception)


class Errors:
    """Collects what ``on_error`` reports and lets a test wait for it."""

    def __init__(self) -> None:
        self.seen: list[Exception] = []
        self.cond = threading.Condition()

    def __call__(self, e: Exception) -> None:
        with self.cond:
            self.seen.append(e)
            self.cond.notify_all()

    def wait(self, cls: type[E], timeout: float = WAIT) -> E:
        with self.cond:
            found = self.cond.wait_for(lambda: any(isinstance(e, cls) for e in self.seen), timeout)
            assert found, f"no {cls.__name__} reported; got {self.seen}"
            return next(e for e in self.seen if isinstance(e, cls))


def connect(broker: Broker, **kw: Any) -> Client:
    kw.setdefault("timeout", WAIT)
    return Client.connect(broker.addr, **kw)


def raw_send(client: Client, line: bytes) -> None:
    """Writes bytes the API would never produce (to make the broker refuse them)."""
    client._send(client._wait_connected(time.monotonic() + WAIT), line)


def test_round_trip_and_receivers(broker: Broker) -> None:
    with connect(broker, name="sub") as a, connect(broker, name="pub") as b:
        assert a.welcome is not None and a.welcome.max_frame == 1 << 20
        sub = a.subscribe("news.>")
        assert b.publish("news.a", {"x": 1}) == 1
        msg = sub.next(timeout=WAIT)
        assert msg == Message("news.a", {"x": 1}, "news.>")
        assert msg.raw == '{"x":1}'
        assert b.publish("other", 1) == 0
        b.subscribe("news.a")
        assert b.publish("news.a", [1, 2]) == 2  # echo is on by default


def test_payload_text_arrives_exactly_as_published(broker: Broker) -> None:
    with connect(broker) as c:
        sub = c.subscribe("t")
        text = '{"q": 1.0, "big": 123456789012345678901234567890, "e": "\\u00e9"}'
        c.publish_raw("t", text)
        msg = sub.next(WAIT)
        assert msg.raw == text
        assert msg.message == {"q": 1.0, "big": 123456789012345678901234567890, "e": "é"}


def test_overlapping_local_subscriptions(broker: Broker) -> None:
    with connect(broker) as c, connect(broker) as p:
        star = c.subscribe("a.*")
        rest = c.subscribe("a.>")
        again = c.subscribe("a.*")
        # The broker counts the connection once, and holds two patterns for it.
        assert p.publish("a.b", "hi") == 1
        assert p.stats()["router"]["wildcard_subscriptions"] == 2
        got = [s.next(WAIT) for s in (star, rest, again)]
        assert [m.pattern for m in got] == ["a.*", "a.>", "a.*"]
        assert all(m.message == "hi" for m in got)
        assert p.publish("a.b.c", "deep") == 1
        assert rest.next(WAIT).channel == "a.b.c"
        c.ping()  # everything published before is delivered by now
        assert star.pending == 0 and again.pending == 0
        # A pattern held twice locally is unsubscribed at the broker with the last user.
        star.unsubscribe()
        assert p.stats()["router"]["wildcard_subscriptions"] == 2
        assert p.publish("a.x", 1) == 1
        assert again.next(WAIT).message == 1
        again.unsubscribe()
        assert p.stats()["router"]["wildcard_subscriptions"] == 1
        with pytest.raises(SubscriptionClosed):
            star.next(0)


def test_callback_runs_for_each_message(broker: Broker) -> None:
    with connect(broker) as c:
        got: list[Message] = []
        done = threading.Event()

        def on_message(m: Message) -> None:
            got.append(m)
            if len(got) == 3:
                done.set()

        c.subscribe("cb", callback=on_message)
        for i in range(3):
            c.publish("cb", i)
        assert done.wait(WAIT)
        assert [m.message for m in got] == [0, 1, 2]


def test_callback_may_publish_without_ack_but_not_wait(broker: Broker) -> None:
    with connect(broker) as c:
        seen: list[object] = []

        def echo(m: Message) -> None:
            try:
                c.ping()
            except RuntimeError as e:
                seen.append(type(e))
            c.publish("pong", m.message, ack=False)

        c.subscribe("ping", callback=echo)
        pong = c.subscribe("pong")
        c.publish("ping", 7)
        assert pong.next(WAIT).message == 7
        assert seen == [RuntimeError]


def test_echo_off(broker: Broker) -> None:
    with connect(broker, echo=False) as quiet, connect(broker) as other:
        own = quiet.subscribe("room")
        other_sub = other.subscribe("room")
        assert quiet.publish("room", "mine") == 1  # only the other connection
        assert other_sub.next(WAIT).message == "mine"
        other.publish("room", "theirs")
        assert own.next(WAIT).message == "theirs"
        quiet.ping()
        assert own.pending == 0


def test_errors_that_keep_the_connection_open(broker: Broker) -> None:
    errors = Errors()
    with connect(broker, on_error=errors) as c:
        with pytest.raises(BadChannel) as bad:
            c.publish("a..b", 1)
        assert bad.value.code == "bad_channel" and bad.value.error
        with pytest.raises(BadChannel):
            c.subscribe("a.>.b")
        with pytest.raises(UnknownCommand):
            c.request({"command": "NOPE"})
        with pytest.raises(BadField):
            c.request({"command": "SUBSCRIBE"})
        with pytest.raises(BadFrame):
            c.request({"command": 5})
        raw_send(c, b"this is not json\n")
        assert errors.wait(BadJson).code == "bad_json"
        # Still usable after every one of them.
        assert c.ping() > 0
        assert c.connected
        # A failed subscribe leaves nothing behind locally.
        assert c._routes.patterns() == []


def test_limit_on_subscriptions(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--max-subscriptions", "1")
    with connect(b) as c:
        c.subscribe("one")
        with pytest.raises(Limit):
            c.subscribe("two")
        assert c.ping() > 0


def test_unauthorized(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--token", "s3cret")
    with pytest.raises(Unauthorized) as e:
        connect(b, token="wrong")
    assert e.value.code == "unauthorized"
    with pytest.raises(Unauthorized):
        connect(b)
    with connect(b, token="s3cret") as c:
        assert c.ping() > 0


def test_frame_too_large_is_refused_locally(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--max-frame", "1024")
    with connect(b) as c:
        assert c.max_frame == 1024
        sub = c.subscribe("big")
        with pytest.raises(FrameTooLarge):
            c.publish("big", "x" * 2000)
        with pytest.raises(FrameTooLarge):
            c.publish("big", "x" * 2000, ack=False)
        assert c.publish("big", "x" * 900) == 1
        assert sub.next(WAIT).message == "x" * 900
        # Nothing reached the broker: it has not refused a frame.
        assert c.stats()["errors"].get("frame_too_large", 0) == 0


def test_frame_too_large_from_the_broker_closes(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--max-frame", "1024")
    errors = Errors()
    lost = threading.Event()
    with connect(b, on_error=errors, reconnect=False, on_disconnect=lambda r: lost.set()) as c:
        raw_send(c, b'{"command":"PING","pad":"' + b"x" * 2000 + b'"}\n')
        assert errors.wait(FrameTooLarge).code == "frame_too_large"
        assert lost.wait(WAIT)
        with pytest.raises(NotConnectedError):
            c.ping()


def test_slow_consumer_at_the_broker(broker_factory: BrokerFactory) -> None:
    # A callback that blocks the reader thread is the one way to stop reading (callbacks
    # must not block, and this is why): the broker then cuts the connection.
    b = broker_factory("--max-pending", "65536")
    errors = Errors()
    release = threading.Event()
    lost = threading.Event()
    with (
        connect(b, on_error=errors, reconnect=False, on_disconnect=lambda r: lost.set()) as c,
        connect(b) as p,
    ):
        c.subscribe("flood", callback=lambda m: release.wait(WAIT))
        payload = "y" * 4096
        stats: dict[str, Any] = {}
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for _ in range(100):
                p.publish("flood", payload, ack=False)
            stats = p.stats()
            if stats["errors"].get("slow_consumer"):
                break
        assert stats["errors"].get("slow_consumer") == 1
        release.set()
        assert lost.wait(WAIT)
        assert isinstance(errors.wait(SlowConsumer), SlowConsumer)


def test_stale_unfinished_frame_closes(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--frame-timeout", "200ms")
    errors = Errors()
    lost = threading.Event()
    with connect(b, on_error=errors, reconnect=False, on_disconnect=lambda r: lost.set()) as c:
        raw_send(c, b'{"command":"PI')  # and never the rest
        assert errors.wait(Stale).code == "stale"
        assert lost.wait(WAIT)


def test_every_code_the_broker_counts_has_an_exception(broker: Broker) -> None:
    # STATS counts errors by code, every code included: the running broker's own list.
    with connect(broker) as c:
        codes = set(c.stats()["errors"])
    assert codes
    for code in codes:
        e = error_from_frame({"command": "ERROR", "code": code, "error": ""})
        assert type(e) is not BrokerError, f"no exception class for broker code {code!r}"


def test_ack_off(broker: Broker) -> None:
    errors = Errors()
    with connect(broker, on_error=errors) as c:
        sub = c.subscribe("fast")
        assert c.publish("fast", "no reply", ack=False) is None
        assert sub.next(WAIT).message == "no reply"
        # A refused ack-less publish can only be reported to on_error.
        assert c.publish("bad..channel", 1, ack=False) is None
        assert errors.wait(BadChannel).id is None
        assert c.ping() > 0


def test_ping_and_stats(broker: Broker) -> None:
    with connect(broker) as c:
        rtt = c.ping()
        assert isinstance(rtt, float) and 0 < rtt < WAIT
        stats = c.stats()
        assert stats["command"] == "STATS"
        assert stats["connections"] >= 1
        assert "id" not in stats


def test_next_times_out(broker: Broker) -> None:
    with connect(broker) as c:
        sub = c.subscribe("quiet")
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sub.next(timeout=0.05)
        assert time.monotonic() - start < WAIT


def test_slow_local_consumer_drops_and_reports(broker: Broker) -> None:
    errors = Errors()
    with connect(broker, queue_size=10, on_error=errors) as c:
        slow = c.subscribe("load")
        got: list[Message] = []
        c.subscribe("load", callback=got.append)  # shares the broker subscription
        for i in range(50):
            c.publish("load", i, ack=False)
        c.ping()  # all 50 have been read by now: the reader was never blocked
        assert len(got) == 50
        assert slow.pending == 10
        assert slow.dropped == 40
        report = errors.wait(LocalSlowConsumer)
        assert isinstance(report, LocalSlowConsumer) and report.subscription is slow
        assert sum(isinstance(e, LocalSlowConsumer) for e in errors.seen) == 1
        # The queue kept the oldest ten; once read, it accepts again.
        assert [slow.next(WAIT).message for _ in range(10)] == list(range(10))
        c.publish("load", "again")
        assert slow.next(WAIT).message == "again"


def test_ten_thousand_messages_in_order(broker: Broker) -> None:
    n = 10_000
    with connect(broker) as sub_client, connect(broker) as pub:
        sub = sub_client.subscribe("seq")
        for i in range(n):
            pub.publish("seq", i, ack=False)
        assert pub.ping() > 0
        got = [sub.next(WAIT).message for _ in range(n)]
        assert got == list(range(n))
        assert sub.dropped == 0


def test_iteration_ends_on_unsubscribe(broker: Broker) -> None:
    with connect(broker) as c:
        sub = c.subscribe("it")
        seen: list[object] = []
        done = threading.Event()

        def consume() -> None:
            seen.extend(m.message for m in sub)
            done.set()

        t = threading.Thread(target=consume)
        t.start()
        for i in range(3):
            c.publish("it", i)
        c.ping()
        sub.unsubscribe()
        assert done.wait(WAIT)
        t.join(WAIT)
        assert seen == [0, 1, 2]


def test_close_ends_calls_and_subscriptions(broker: Broker) -> None:
    c = connect(broker)
    sub = c.subscribe("x")
    c.close()
    c.close()  # twice is fine
    assert c.closed
    with pytest.raises(NotConnectedError):
        c.publish("x", 1)
    with pytest.raises(SubscriptionClosed):
        sub.next(WAIT)
    assert list(sub) == []


def test_cannot_connect_raises_oserror() -> None:
    with pytest.raises(OSError):
        Client.connect("127.0.0.1:1", timeout=WAIT)


def test_broker_error_is_the_base(broker: Broker) -> None:
    with connect(broker) as c, pytest.raises(BrokerError):
        c.publish("*", 1)
