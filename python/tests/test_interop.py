"""Interoperation with the Rust programs: `client` (whose interface and output the
Python CLI mirrors) and `chat` (which the Python chat example talks to)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from conftest import PYTHON_DIR, WAIT, Broker, BrokerFactory, Program, binary, python_cli

from pubsub_client import Client

Start = Callable[[list[str]], Program]


def rust_client(*args: str) -> list[str]:
    return [str(binary("client")), *args]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, check=False)


def test_rust_publisher_python_subscriber(broker: Broker) -> None:
    with Client.connect(broker.addr, timeout=WAIT) as c:
        sub = c.subscribe("interop.>")
        text = '{"temp": 21.5, "big": 123456789012345678901234567890}'
        out = run(rust_client("--addr", broker.addr, "pub", "interop.rust", text))
        assert out.returncode == 0, out.stderr
        assert out.stdout == "published to 1 receiver\n"
        msg = sub.next(WAIT)
        assert msg.channel == "interop.rust"
        assert msg.raw == text
        assert msg.message == {"temp": 21.5, "big": 123456789012345678901234567890}


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_python_cli_sub_prints_what_the_rust_client_prints(
    broker: Broker, programs: Start, extra: list[str]
) -> None:
    # Overlapping patterns: each message is printed once, as by the Rust client.
    args = ["--addr", broker.addr, "sub", "cli.*", "cli.>", "--count", "4", *extra]
    rust = programs(rust_client(*args))
    py = programs(python_cli(*args))
    for p in (rust, py):
        p.wait_stderr("subscribed to cli.*")
        p.wait_stderr("subscribed to cli.>")
    with Client.connect(broker.addr, timeout=WAIT) as pub:
        pub.publish_raw("cli.a", '"hello"')
        pub.publish_raw("cli.a", '{"headline": "rust 2.0", "score": 1.0}')
        pub.publish_raw("cli.b.c", "12345678901234567890123")
        pub.publish("cli.é", 'caf\u00e9 \\ "quoted"')
    rust_lines = [rust.line() for _ in range(4)]
    py_lines = [py.line() for _ in range(4)]
    assert py_lines == rust_lines
    assert rust.finish() == 0 and py.finish() == 0
    if not extra:
        assert py_lines[0] == 'cli.a: "hello"'


def test_python_cli_pub_and_ping_match_the_rust_client(broker: Broker, programs: Start) -> None:
    listener = programs(python_cli("--addr", broker.addr, "sub", "p"))
    listener.wait_stderr("subscribed to p")
    for message in ('"hi"', "hello world", '{"a": 1.0}', "42"):
        rust = run(rust_client("--addr", broker.addr, "pub", "p", message))
        py = run(python_cli("pub", "p", message, "--addr", broker.addr))
        assert (py.returncode, py.stdout) == (rust.returncode, rust.stdout)
        assert py.stdout == "published to 1 receiver\n"
        assert listener.line() == listener.line()  # both sent the same text
    for argv in (
        rust_client("--addr", broker.addr, "ping"),
        python_cli("--addr", broker.addr, "ping"),
    ):
        out = run(argv)
        assert out.returncode == 0
        assert re.fullmatch(rf"pong from {re.escape(broker.addr)} in \d+\.\d{{3}} ms\n", out.stdout)


def test_cli_errors_match_the_rust_client(broker_factory: BrokerFactory) -> None:
    b = broker_factory("--token", "s3cret")
    cases = [
        ["--addr", "127.0.0.1:1", "ping"],
        ["--addr", b.addr, "ping"],
        ["--addr", b.addr, "--token", "s3cret", "pub", "a..b", "1"],
        ["--addr", b.addr, "--token", "s3cret", "sub", "a.>.b"],
    ]
    for args in cases:
        rust = run(rust_client(*args))
        py = run(python_cli(*args))
        assert rust.returncode == 1
        assert (py.returncode, py.stdout, py.stderr) == (rust.returncode, rust.stdout, rust.stderr)
    # Bad arguments exit with 2 in both.
    assert run(rust_client("sub")).returncode == 2
    assert run(python_cli("sub")).returncode == 2


def test_cli_sub_ends_like_the_rust_client_when_the_broker_goes(
    broker: Broker, programs: Start
) -> None:
    args = ["--addr", broker.addr, "sub", "gone"]
    rust = programs(rust_client(*args))
    py = programs(python_cli(*args))
    for p in (rust, py):
        p.wait_stderr("subscribed to gone")
    broker.stop()
    assert rust.finish() == 1 and py.finish() == 1
    assert py.drain_stderr()[-1] == rust.drain_stderr()[-1]
    assert rust.err_lines[-1].startswith("client: connection closed")


def test_python_chat_talks_with_rust_chat(broker: Broker, programs: Start) -> None:
    bob = programs([str(binary("chat")), "--addr", broker.addr, "--name", "bob"])
    alice = programs(
        [
            sys.executable,
            str(PYTHON_DIR / "examples" / "chat.py"),
            "--addr",
            broker.addr,
            "--name",
            "alice",
        ]
    )
    bob.wait_stderr("* joined lobby")
    alice.wait_stderr("* joined lobby")
    alice.send("hello from python")
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] alice: hello from python", bob.line())
    bob.send("hello from rust")
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] bob: hello from rust", alice.line())
    # Several rooms: lines carry their room, in both directions.
    alice.send("/join dev")
    alice.wait_stderr("* joined dev")
    bob.send("/join dev")
    bob.wait_stderr("* joined dev")
    alice.send("//slash")
    assert re.fullmatch(r"#dev \[\d\d:\d\d:\d\d\] alice: /slash", bob.line())
    bob.send("/quit")
    alice.send("/quit")
    assert bob.finish() == 0
    assert alice.finish() == 0


def test_python_publisher_example(broker: Broker, programs: Start) -> None:
    sub = programs(rust_client("--addr", broker.addr, "sub", "ticks", "--count", "2"))
    sub.wait_stderr("subscribed to ticks")
    pub = programs(
        [
            sys.executable,
            str(PYTHON_DIR / "examples" / "publisher.py"),
            "ticks",
            "--addr",
            broker.addr,
            "--count",
            "2",
            "--interval",
            "0",
        ]
    )
    lines = [pub.line(), pub.line()]
    assert pub.finish() == 0
    for seq, line in enumerate(lines, start=1):
        assert line.startswith("ticks: {") and line.endswith("} -> 1 receiver")
        tick = json.loads(line.removeprefix("ticks: ").removesuffix(" -> 1 receiver"))
        assert tick["seq"] == seq and tick["channel"] == "ticks"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tick["time"])
        received = sub.line()
        assert received == f"ticks: {json.dumps(tick, separators=(',', ':'))}"
    assert sub.finish() == 0
