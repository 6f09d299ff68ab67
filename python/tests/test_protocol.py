"""The protocol core without a broker: encoding, line splitting, parsing, wildcard
matching, the error table, backoff, and the CLI's formatting helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pubsub_client
from pubsub_client import Message, errors
from pubsub_client import __main__ as cli
from pubsub_client._protocol import (
    LineDecoder,
    backoff_delay,
    encode,
    encode_publish,
    hello_fields,
    matches,
    parse_addr,
    parse_frame,
    parse_json_text,
    parse_message,
    raw_json,
    welcome_of,
)
from pubsub_client._routes import Routes

# ---------------------------------------------------------------- encoding


def test_encode_is_compact_one_line_utf8() -> None:
    line = encode({"command": "PUBLISH", "channel": "news", "message": "a\nb é", "id": 1})
    assert line == '{"command":"PUBLISH","channel":"news","message":"a\\nb é","id":1}\n'.encode()
    assert line.count(b"\n") == 1


def test_encode_refuses_nan_and_non_json() -> None:
    with pytest.raises(ValueError):
        encode({"command": "PUBLISH", "message": float("nan")})
    with pytest.raises(TypeError):
        encode({"command": "PUBLISH", "message": object()})


def test_encode_publish_keeps_the_text_and_puts_message_last() -> None:
    assert encode_publish("a.b", "1.0", 7) == (
        b'{"command":"PUBLISH","channel":"a.b","id":7,"message":1.0}\n'
    )
    assert encode_publish('q"x', '{"k": [1, 2]}', None) == (
        b'{"command":"PUBLISH","channel":"q\\"x","ack":false,"message":{"k": [1, 2]}}\n'
    )
    frame = json.loads(encode_publish("c", "123456789012345678901234567890", 1))
    assert frame["message"] == 123456789012345678901234567890


def test_hello_fields_leave_out_what_is_not_given() -> None:
    assert hello_fields(None, None, True) == {"command": "HELLO", "echo": True}
    assert hello_fields("py", "t", False) == {
        "command": "HELLO",
        "echo": False,
        "name": "py",
        "token": "t",
    }


def test_raw_json_and_json_text() -> None:
    assert raw_json({"x": [1, "é"]}) == '{"x":[1,"é"]}'
    assert parse_json_text('  {"a": 1.0}\n') == '{"a": 1.0}'
    for bad in ("NaN", "Infinity", "-Infinity", "hello", "", "{", "1 2"):
        with pytest.raises(ValueError):
            parse_json_text(bad)


# ---------------------------------------------------------------- line splitting

STREAM = (
    b'{"command":"PONG","id":1}\n'
    b"\r\n"
    b"   \n"
    b'{"command":"MESSAGE","channel":"a","message":"x\\ny"}\r\n'
    b'{"command":"PONG"}\n'
)
FRAMES = [
    b'{"command":"PONG","id":1}',
    b'{"command":"MESSAGE","channel":"a","message":"x\\ny"}',
    b'{"command":"PONG"}',
]


def test_lines_split_at_every_offset() -> None:
    # As NATS's split_test.go: the same bytes cut in two at every offset give the same
    # frames.
    for cut in range(len(STREAM) + 1):
        d = LineDecoder()
        assert d.feed(STREAM[:cut]) + d.feed(STREAM[cut:]) == FRAMES, cut
        assert d.pending == 0


def test_lines_fed_byte_by_byte() -> None:
    d = LineDecoder()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += d.feed(STREAM[i : i + 1])
    assert out == FRAMES


def test_unfinished_line_is_kept_and_bounded() -> None:
    d = LineDecoder(limit=10)
    assert d.feed(b"0123456789") == []
    assert d.pending == 10
    with pytest.raises(ValueError):
        d.feed(b"x")
    # A long line that is complete in one read is fine: only waiting bytes are bounded.
    assert LineDecoder(limit=4).feed(b"abcdefgh\n") == [b"abcdefgh"]


# ---------------------------------------------------------------- parsing


def test_message_fast_path_keeps_the_payload_text() -> None:
    line = b'{"command":"MESSAGE","channel":"n.a","message":{"q": 1.0, "e": "\\u00e9"}}'
    channel, message, raw = parse_message(line) or ("", None, "")
    assert channel == "n.a"
    assert message == {"q": 1.0, "e": "é"}
    assert raw == '{"q": 1.0, "e": "\\u00e9"}'


def test_message_in_another_field_order_is_left_to_the_full_parser() -> None:
    assert parse_message(b'{"channel":"a","command":"MESSAGE","message":1}') is None
    assert parse_message(b'{"command":"MESSAGE","channel":"a","message":1,"x":2}') is None
    assert parse_message(b'{"command":"PONG"}') is None


def test_parse_frame() -> None:
    assert parse_frame(b'{"command":"pong","id":3}') == {"command": "PONG", "id": 3}
    for bad in (b"[1]", b'{"id":1}', b'{"command":5}', b"nope"):
        with pytest.raises(ValueError):
            parse_frame(bad)


def test_welcome() -> None:
    w = welcome_of(
        {"command": "WELCOME", "server": "s", "version": "0.1.0", "max_frame": 99, "client_id": 4}
    )
    assert (w.server, w.version, w.max_frame, w.client_id) == ("s", "0.1.0", 99, 4)
    assert welcome_of({"command": "WELCOME"}).max_frame == 1 << 20


def test_addresses() -> None:
    assert parse_addr("127.0.0.1:7400") == ("127.0.0.1", 7400)
    assert parse_addr("[::1]:7") == ("::1", 7)
    assert parse_addr(("h", 1)) == ("h", 1)
    with pytest.raises(ValueError):
        parse_addr("nohost")


def test_message_equality_ignores_raw() -> None:
    assert Message("a", 1, "a", raw="1") == Message("a", 1, "a", raw="1.0e0")


# ---------------------------------------------------------------- wildcards

# (pattern, channel, matches?) -- docs/protocol.md's table and its edges.
MATCH_TABLE = [
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
    ("a.b", "A.b", False),
    ("a.*", "a.b", True),
    ("a.*", "a.x", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "a", False),
    ("*.b.>", "x.b.c", True),
    ("*.b.>", "y.b.c.d", True),
    ("*.b.>", "x.b", False),
    (">", "a", True),
    (">", "a.b.c", True),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a*", "ab", False),
    ("a*", "a*", True),
    ("b>", "b>", True),
    ("b>", "b.c", False),
    ("*.*", "a.b", True),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.b.d", False),
]


@pytest.mark.parametrize(("pattern", "channel", "expected"), MATCH_TABLE)
def test_matches(pattern: str, channel: str, expected: bool) -> None:
    assert matches(pattern, channel) is expected


def test_routes_count_references_and_match_like_matches() -> None:
    routes: Routes[str] = Routes()
    assert routes.add("a.*", "s1") is True
    assert routes.add("a.*", "s2") is False  # already subscribed at the broker
    assert routes.add("a.b", "s3") is True
    assert routes.add(">", "s4") is True
    assert sorted(routes.lookup("a.b")) == ["s1", "s2", "s3", "s4"]
    assert routes.lookup("x.y") == ["s4"]
    assert routes.remove("a.*", "s1") is False  # s2 still uses it
    assert routes.remove("a.*", "s1") is False  # not there any more
    assert routes.remove("a.*", "s2") is True  # last one: unsubscribe at the broker
    assert sorted(routes.lookup("a.b")) == ["s3", "s4"]
    assert routes.patterns() == ["a.b", ">"]
    for pattern, channel, expected in MATCH_TABLE:
        r: Routes[int] = Routes()
        r.add(pattern, 1)
        assert (r.lookup(channel) == [1]) is expected, (pattern, channel)


# ---------------------------------------------------------------- errors and backoff

CODES = {
    "bad_json": pubsub_client.BadJson,
    "bad_frame": pubsub_client.BadFrame,
    "unknown_command": pubsub_client.UnknownCommand,
    "bad_field": pubsub_client.BadField,
    "bad_channel": pubsub_client.BadChannel,
    "limit": pubsub_client.Limit,
    "frame_too_large": pubsub_client.FrameTooLarge,
    "unauthorized": pubsub_client.Unauthorized,
    "slow_consumer": pubsub_client.SlowConsumer,
    "stale": pubsub_client.Stale,
    "link_refused": pubsub_client.LinkRefused,
}


@pytest.mark.parametrize(("code", "cls"), sorted(CODES.items()))
def test_every_error_code_has_its_exception(code: str, cls: type[errors.BrokerError]) -> None:
    e = errors.error_from_frame({"command": "ERROR", "code": code, "error": "why", "id": 3})
    assert type(e) is cls
    assert isinstance(e, pubsub_client.BrokerError)
    assert (e.code, e.error, e.id) == (code, "why", 3)
    assert str(e) == f"{code}: why"


def test_protocol_md_lists_no_code_without_an_exception() -> None:
    doc = (
        (Path(__file__).resolve().parents[2] / "docs" / "protocol.md")
        .read_text()
        .split("## Errors", 1)[1]
        .split("##", 1)[0]
    )
    codes = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")}
    assert codes, "no codes found in docs/protocol.md"
    assert codes <= set(CODES)


def test_unknown_code_is_a_plain_broker_error() -> None:
    e = errors.error_from_frame({"command": "ERROR", "code": "new_code"})
    assert type(e) is pubsub_client.BrokerError
    assert e.code == "new_code"


def test_backoff_doubles_up_to_the_cap_and_is_jittered() -> None:
    assert [backoff_delay(n, 0.1, 5.0, 1.0) for n in range(8)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    )
    assert backoff_delay(3, 0.1, 5.0, 0.5) == pytest.approx(0.4)
    assert backoff_delay(10_000, 0.1, 5.0, 1.0) == 5.0


# ---------------------------------------------------------------- CLI helpers (as src/cli.rs)


def test_cli_message_arguments() -> None:
    assert cli.message_json("42") == "42"
    assert cli.message_json('"hi"') == '"hi"'
    assert cli.message_json('{"a": 1.0}') == '{"a": 1.0}'
    assert cli.message_json("hello world") == '"hello world"'
    assert cli.message_json('say "hi"') == '"say \\"hi\\""'
    assert cli.message_json("") == '""'
    assert cli.message_json("NaN") == '"NaN"'


def test_cli_formats() -> None:
    m = Message("news", {"a": 1}, "news", raw='{"a": 1.0}')
    assert cli.format_message(m, False) == 'news: {"a": 1.0}'
    assert cli.format_message(m, True) == '{"channel":"news","message":{"a": 1.0}}'
    assert cli.receivers(0) == "0 receivers"
    assert cli.receivers(1) == "1 receiver"
    assert cli.receivers(2) == "2 receivers"
