"""A Python client for the pubsub broker (protocol v1: newline-delimited JSON over TCP).

Blocking::

    from pubsub_client import Client

    with Client.connect("127.0.0.1:7400", name="py") as c:
        sub = c.subscribe("news.>")
        c.publish("news.a", {"x": 1})
        print(sub.next(timeout=1.0))

asyncio: ``from pubsub_client.aio import connect``.

# Layout

- ``_protocol``: frames, line splitting, wildcard matching; no I/O.
- ``_routes``: local subscriptions by pattern, reference-counted.
- ``errors``: the exceptions, one per broker error code.
- ``client``: the blocking client (a reader thread per client).
- ``aio``: the asyncio client (a reader task per client).
- ``__main__``: ``python -m pubsub_client sub|pub|ping``, as the Rust ``client``.
"""

from ._protocol import JSON, JSONLike, Message, Welcome, matches
from .client import Client, Subscription
from .errors import (
    BadChannel,
    BadField,
    BadFrame,
    BadJson,
    BrokerError,
    ConnectionLostError,
    FrameTooLarge,
    Limit,
    LinkRefused,
    LocalSlowConsumer,
    NotConnectedError,
    ProtocolError,
    PubSubError,
    SlowConsumer,
    Stale,
    SubscriptionClosed,
    Unauthorized,
    UnknownCommand,
)

#: ``next(timeout)`` raises the built-in ``TimeoutError``; named here for convenience.
TimeoutError = TimeoutError

__version__ = "0.1.0"

__all__ = [
    "JSON",
    "BadChannel",
    "BadField",
    "BadFrame",
    "BadJson",
    "BrokerError",
    "Client",
    "ConnectionLostError",
    "FrameTooLarge",
    "JSONLike",
    "Limit",
    "LinkRefused",
    "LocalSlowConsumer",
    "Message",
    "NotConnectedError",
    "ProtocolError",
    "PubSubError",
    "SlowConsumer",
    "Stale",
    "Subscription",
    "SubscriptionClosed",
    "TimeoutError",
    "Unauthorized",
    "UnknownCommand",
    "Welcome",
    "__version__",
    "matches",
]
