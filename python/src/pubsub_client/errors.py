"""Every exception the client raises.

Owns the error hierarchy and the table from a broker error code (docs/protocol.md,
"Errors") to its exception class. It never talks to a socket.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "FATAL_CODES",
    "BadChannel",
    "BadField",
    "BadFrame",
    "BadJson",
    "BrokerError",
    "ConnectionLostError",
    "FrameTooLarge",
    "Limit",
    "LinkRefused",
    "LocalSlowConsumer",
    "NotConnectedError",
    "ProtocolError",
    "PubSubError",
    "SlowConsumer",
    "Stale",
    "SubscriptionClosed",
    "Unauthorized",
    "UnknownCommand",
    "error_from_frame",
]


class PubSubError(Exception):
    """Base class of every error this package raises (besides ``TimeoutError``)."""


class BrokerError(PubSubError):
    """The broker answered with ``ERROR`` (or the client refused a frame the broker
    would have refused, such as :class:`FrameTooLarge`).

    ``code`` is the wire code (``bad_channel``, ``unauthorized``...), ``error`` the
    broker's text for humans, ``id`` the id of the command it answers, if any.
    """

    #: The wire code of this class; instances of the base class carry their own.
    CODE: ClassVar[str] = ""

    def __init__(self, error: str = "", *, code: str | None = None, id: Any = None) -> None:
        self.code: str = code if code is not None else self.CODE
        self.error: str = error
        self.id: Any = id
        super().__init__(f"{self.code}: {error}" if error else self.code)


class BadJson(BrokerError):
    """``bad_json``: the line was not JSON or not UTF-8. The connection stays open."""

    CODE = "bad_json"


class BadFrame(BrokerError):
    """``bad_frame``: not a JSON object, or no string ``command``. Stays open."""

    CODE = "bad_frame"


class UnknownCommand(BrokerError):
    """``unknown_command``: the command names nothing the broker knows. Stays open."""

    CODE = "unknown_command"


class BadField(BrokerError):
    """``bad_field``: a required field is missing or has the wrong type. Stays open."""

    CODE = "bad_field"


class BadChannel(BrokerError):
    """``bad_channel``: the channel or pattern breaks the channel rules. Stays open."""

    CODE = "bad_channel"


class Limit(BrokerError):
    """``limit``: too many subscriptions (stays open) or connections (closed)."""

    CODE = "limit"


class FrameTooLarge(BrokerError):
    """``frame_too_large``: a frame longer than the broker's ``max_frame``.

    The client raises it itself, before sending, for frames it knows are too long; the
    broker closes a connection that sends one.
    """

    CODE = "frame_too_large"


class Unauthorized(BrokerError):
    """``unauthorized``: wrong or missing token. Closed; the client stops reconnecting."""

    CODE = "unauthorized"


class SlowConsumer(BrokerError):
    """``slow_consumer``: this connection did not read fast enough. Closed by the broker."""

    CODE = "slow_consumer"


class Stale(BrokerError):
    """``stale``: an unfinished frame made no progress for the broker's
    ``--frame-timeout``, or was dropped because the broker is over ``--max-memory``.
    Closed by the broker."""

    CODE = "stale"


class LinkRefused(BrokerError):
    """``link_refused``: a broker-to-broker link was refused (docs/federation.md)."""

    CODE = "link_refused"


class LocalSlowConsumer(SlowConsumer):
    """A subscription's local queue was full, so a message was dropped.

    Reported to ``on_error`` once per overflow (until the queue accepts a message again);
    ``subscription.dropped`` counts every dropped message.
    """

    def __init__(self, error: str, *, subscription: object) -> None:
        super().__init__(error)
        self.subscription = subscription


class NotConnectedError(PubSubError):
    """The client is not connected (reconnecting past the call's timeout, or closed)."""


class ConnectionLostError(NotConnectedError):
    """The connection broke while a command waited for its reply; whether the broker
    handled the command is unknown."""


class ProtocolError(PubSubError):
    """The broker sent something that is not protocol v1."""


class SubscriptionClosed(PubSubError):
    """``next()`` on a subscription that was unsubscribed or whose client was closed."""


_BY_CODE: dict[str, type[BrokerError]] = {
    cls.CODE: cls
    for cls in (
        BadJson,
        BadFrame,
        UnknownCommand,
        BadField,
        BadChannel,
        Limit,
        FrameTooLarge,
        Unauthorized,
        SlowConsumer,
        Stale,
        LinkRefused,
    )
}

#: Codes after which the broker closes the connection when they come without an ``id``.
FATAL_CODES = frozenset(
    {"frame_too_large", "unauthorized", "slow_consumer", "stale", "limit", "link_refused"}
)


def error_from_frame(frame: dict[str, Any]) -> BrokerError:
    """The exception for an ``ERROR`` frame; unknown codes give a plain BrokerError."""
    code = frame.get("code")
    code = code if isinstance(code, str) else "unknown"
    text = frame.get("error")
    text = text if isinstance(text, str) else ""
    cls = _BY_CODE.get(code)
    if cls is None:
        return BrokerError(text, code=code, id=frame.get("id"))
    return cls(text, id=frame.get("id"))
