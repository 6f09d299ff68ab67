"""Protocol v1 without I/O: encoding frames, splitting lines, parsing what the broker
sends, and wildcard matching.

Owns every byte-level rule of docs/protocol.md that a client needs. Both transports
(``client`` and ``aio``) call into it; it never touches a socket, a thread or a loop, so
it is tested without a broker.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "DEFAULT_MAX_FRAME",
    "JSON",
    "JSONLike",
    "LineDecoder",
    "Message",
    "Welcome",
    "encode",
    "encode_publish",
    "matches",
    "parse_frame",
    "parse_message",
    "raw_json",
]

#: Any JSON value as Python decodes it.
JSON = Union[None, bool, int, float, str, list["JSON"], dict[str, "JSON"]]  # noqa: UP007 - a runtime alias needs Union for the string forward references

#: What ``publish`` accepts: JSON built from any mappings and sequences (covariant, so
#: a ``dict[str, str]`` is accepted where ``JSON``'s ``dict[str, JSON]`` would not be).
JSONLike = Union[  # noqa: UP007 - see JSON
    None, bool, int, float, str, Sequence["JSONLike"], Mapping[str, "JSONLike"]
]

#: The broker's default ``--max-frame`` (1 MiB); used until WELCOME tells the real one.
DEFAULT_MAX_FRAME = 1 << 20

#: Slack on top of ``max_frame`` for an incoming line: a MESSAGE wraps a payload that
#: fitted in the publisher's frame with its own command and channel (256 bytes at most,
#: escapes doubling it at worst), so 4 KiB is more than enough.
INCOMING_SLACK = 4096

_COMPACT = (",", ":")
_decoder = json.JSONDecoder()
# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=_COMPACT, ensure_ascii=False, allow_nan=False).encode
_MESSAGE_PREFIX = '{"command":"MESSAGE","channel":'
_MESSAGE_FIELD = ',"message":'


@dataclass(frozen=True, slots=True)
class Message:
    """One message received on a subscription.

    ``channel`` is where it was published, ``message`` the decoded JSON payload,
    ``pattern`` the local subscription's pattern that matched it, and ``raw`` the
    payload's JSON text exactly as the publisher wrote it (numbers and escapes intact).
    """

    channel: str
    message: JSON
    pattern: str
    raw: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Welcome:
    """The broker's ``WELCOME``: its name, version, frame limit and our connection id."""

    server: str
    version: str
    max_frame: int
    client_id: int


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def encode(fields: dict[str, Any]) -> bytes:
    """One frame: compact JSON plus ``\\n``. Compact JSON never holds a raw newline.

    Raises ``ValueError`` for NaN or infinities (the broker refuses them) and
    ``TypeError`` for values JSON cannot hold.
    """
    return _encode(fields).encode() + b"\n"


def encode_publish(channel: str, raw: str, id: int | None) -> bytes:
    """A PUBLISH frame around ``raw``, JSON text sent exactly as given; ``id`` None
    means ``ack: false`` (no reply)."""
    head = _channel_json(channel)
    if id is None:
        return f'{{"command":"PUBLISH","channel":{head},"ack":false,"message":{raw}}}\n'.encode()
    return f'{{"command":"PUBLISH","channel":{head},"id":{id},"message":{raw}}}\n'.encode()


@functools.lru_cache(maxsize=1024)
def _channel_json(channel: str) -> str:
    # Publishers use few channels, many times each.
    return _encode(channel)


def raw_json(value: JSONLike) -> str:
    """``value`` as the compact JSON text a PUBLISH carries."""
    return _encode(value)


def parse_json_text(text: str) -> str:
    """Checks that ``text`` is one JSON value as the broker accepts it (no NaN or
    Infinity) and returns it without surrounding whitespace; raises ``ValueError``."""
    json.loads(text, parse_constant=_reject_constant)
    return text.strip(" \t\r\n")


class LineDecoder:
    """Splits a byte stream into frames: ``\\n`` ends a frame, a ``\\r`` before it is
    dropped, blank lines are skipped.

    ``limit`` bounds a line still waiting for its newline, so a peer that never sends
    one cannot make the client buffer without end; past it ``feed`` raises
    ``ValueError``.
    """

    def __init__(self, limit: int = DEFAULT_MAX_FRAME + INCOMING_SLACK) -> None:
        self.limit = limit
        self._rest = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Adds ``data``; returns the complete frames it finished, in order."""
        if self._rest:
            data = self._rest + data
        parts = data.split(b"\n")
        self._rest = parts.pop()
        if len(self._rest) > self.limit:
            raise ValueError(f"line longer than {self.limit} bytes without a newline")
        frames = []
        for part in parts:
            if part.endswith(b"\r"):
                part = part[:-1]
            if part and not part.isspace():
                frames.append(part)
        return frames

    @property
    def pending(self) -> int:
        """Bytes held of a line not yet ended."""
        return len(self._rest)


def parse_message(line: bytes) -> tuple[str, JSON, str] | None:
    """``(channel, message, raw)`` when ``line`` is a MESSAGE in the broker's field
    order, else None (the caller then parses the frame in full).

    The broker writes ``command`` first and ``message`` last; that lets the payload's
    exact text be cut out without re-encoding it.
    """
    text = line.decode()
    if not text.startswith(_MESSAGE_PREFIX):
        return None
    try:
        channel, at = _decoder.raw_decode(text, len(_MESSAGE_PREFIX))
        if not isinstance(channel, str) or not text.startswith(_MESSAGE_FIELD, at):
            return None
        start = at + len(_MESSAGE_FIELD)
        message, end = _decoder.raw_decode(text, start)
    except ValueError:
        return None
    if text[end:].strip() != "}":
        return None
    return channel, message, text[start:end]


def parse_frame(line: bytes) -> dict[str, Any]:
    """Any frame as a dict; raises ``ValueError`` when it is not a JSON object with a
    string ``command`` (upper-cased here, as the broker writes it)."""
    frame = json.loads(line)
    if not isinstance(frame, dict) or not isinstance(frame.get("command"), str):
        raise ValueError(f"not a protocol frame: {line[:200]!r}")
    frame["command"] = frame["command"].upper()
    return frame


def message_of(frame: dict[str, Any]) -> tuple[str, JSON, str] | None:
    """``(channel, message, raw)`` from a fully parsed MESSAGE frame (any field order)."""
    channel = frame.get("channel")
    if not isinstance(channel, str) or "message" not in frame:
        return None
    message = frame["message"]
    return channel, message, raw_json(message)


def split_pattern(pattern: str) -> tuple[str, ...]:
    """A pattern's tokens, for :func:`matches_tokens`."""
    return tuple(pattern.split("."))


def matches_tokens(pattern: tuple[str, ...], channel: tuple[str, ...] | list[str]) -> bool:
    """Whether a channel (as tokens) matches a pattern (as tokens): ``*`` is exactly
    one token, ``>`` as the last token one or more tokens."""
    n = len(pattern)
    if pattern[-1] == ">":
        if len(channel) < n:
            return False
        n -= 1
    elif len(channel) != n:
        return False
    for i in range(n):
        p = pattern[i]
        if p != "*" and p != channel[i]:
            return False
    return True


def matches(pattern: str, channel: str) -> bool:
    """Whether ``channel`` matches the subscription ``pattern`` (docs/protocol.md,
    "Channels and wildcards")."""
    if pattern == channel:
        return True
    return matches_tokens(split_pattern(pattern), channel.split("."))


def is_wildcard(pattern: str) -> bool:
    """Whether a pattern has a ``*`` or ``>`` token (so it can match other channels)."""
    return any(t == "*" or t == ">" for t in pattern.split("."))


def welcome_of(frame: dict[str, Any]) -> Welcome:
    """The WELCOME fields, with the defaults a partial frame would imply."""
    max_frame = frame.get("max_frame")
    client_id = frame.get("client_id")
    return Welcome(
        server=str(frame.get("server", "")),
        version=str(frame.get("version", "")),
        max_frame=max_frame if isinstance(max_frame, int) else DEFAULT_MAX_FRAME,
        client_id=client_id if isinstance(client_id, int) else 0,
    )


def hello_fields(name: str | None, token: str | None, echo: bool) -> dict[str, Any]:
    """The HELLO frame's fields (without ``id``)."""
    fields: dict[str, Any] = {"command": "HELLO", "echo": echo}
    if name is not None:
        fields["name"] = name
    if token is not None:
        fields["token"] = token
    return fields


def backoff_delay(attempt: int, base: float, most: float, jitter: float) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 first): ``base`` doubled
    per failed attempt, capped at ``most``, scaled by ``jitter`` (drawn from 0.5-1.0 by
    the caller) so that clients cut off together do not return in step."""
    return min(most, base * 2.0 ** min(attempt, 62)) * jitter


def parse_addr(addr: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) or a ``(host, port)`` tuple."""
    if isinstance(addr, tuple):
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
