"""Fixtures: the real broker binary on an ephemeral port, a TCP proxy that can cut every
connection, and helpers to run the Rust programs.

The broker is ``$PUBSUB_BROKER`` or ``target/release/broker`` in the repository; the Rust
``client`` and ``chat`` sit beside it (or in ``$PUBSUB_BIN_DIR``). When a binary is
missing the test is skipped on a developer's machine but FAILS when ``CI`` is set, so CI
can never pass without having run against the broker.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO / "python"

#: How long a broker may take to print `listening on ADDR` (a cold start under load).
START_TIMEOUT = 15.0

#: Default bound on waiting for anything in a test: generous for a loaded CI machine,
#: and every wait is on an event, so a passing test never takes this long.
WAIT = 10.0


def binary(name: str) -> Path:
    """The path of a Rust program, or a failure (under CI) / skip (elsewhere)."""
    if name == "broker" and os.environ.get("PUBSUB_BROKER"):
        path = Path(os.environ["PUBSUB_BROKER"])
    else:
        bin_dir = os.environ.get("PUBSUB_BIN_DIR")
        if bin_dir:
            path = Path(bin_dir) / name
        elif os.environ.get("PUBSUB_BROKER"):
            path = Path(os.environ["PUBSUB_BROKER"]).parent / name
        else:
            path = REPO / "target" / "release" / name
    if not path.is_file():
        message = (
            f"{name} binary not found at {path}: build it with "
            f"`cargo build --release --bin {name}` or set PUBSUB_BROKER / PUBSUB_BIN_DIR"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Broker:
    """A broker process. ``addr`` is ``HOST:PORT`` as it printed it."""

    def __init__(self, path: Path, args: list[str], log: Path) -> None:
        self.path = path
        self.args = args
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.addr = ""
        self.port = 0

    def start(self, port: int = 0) -> Broker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.path), "--listen", f"127.0.0.1:{port}", *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        assert self.proc.stdout is not None
        line = read_line(self.proc.stdout, START_TIMEOUT)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"broker did not announce its address: {line!r}")
        self.addr = line.removeprefix("listening on ").strip()
        self.port = int(self.addr.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        """Stops and starts again on the same port."""
        port = self.port
        self.stop()
        deadline = time.monotonic() + WAIT
        while True:
            try:
                self.start(port)
                return
            except RuntimeError:
                # The old process may hold the port a moment after exiting; nothing
                # announces when it is free, so retry until the deadline.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a pipe, or '' at EOF or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


BrokerFactory = Callable[..., Broker]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Starts brokers with extra flags: ``broker_factory("--token", "t")``."""
    path = binary("broker")
    started: list[Broker] = []

    def start(*args: str) -> Broker:
        b = Broker(path, list(args), tmp_path / f"broker{len(started)}.log").start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> Broker:
    """A broker with default flags on 127.0.0.1, ephemeral port."""
    return broker_factory()


class Proxy:
    """A TCP proxy in front of the broker; :meth:`cut` drops every connection through
    it (the broker stays up), as a network failure would."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.running = True
        # While cleared, data read is held instead of forwarded; `held` is set once
        # some is (so a test knows a frame is in flight and stuck).
        self.flowing = threading.Event()
        self.flowing.set()
        self.held = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=WAIT)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            with self.lock:
                self.conns += [down, up]
                self.accepted += 1
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.flowing.is_set():
                    self.held.set()
                    self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def pause(self) -> None:
        """Holds whatever is sent from now on, in both directions."""
        self.held.clear()
        self.flowing.clear()

    def cut(self) -> None:
        """Closes every connection through the proxy (and drops what it held); new ones
        are still accepted."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.flowing.set()

    def close(self) -> None:
        self.running = False
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(broker: Broker) -> Iterator[Proxy]:
    host, port = broker.addr.rsplit(":", 1)
    p = Proxy((host, int(port)))
    yield p
    p.close()


class Program:
    """A running program whose stdout and stderr lines are collected by threads, so a
    test waits for a line with a timeout instead of blocking on a pipe."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: queue.Queue[str | None] = queue.Queue()
        self.err_lines: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, q in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._collect, args=(stream, q), daemon=True).start()

    @staticmethod
    def _collect(stream: IO[bytes], q: queue.Queue[str | None]) -> None:
        for raw in stream:
            q.put(raw.decode(errors="replace").rstrip("\n"))
        q.put(None)

    def line(self, timeout: float = WAIT) -> str:
        """The next stdout line; fails the test after ``timeout``."""
        try:
            line = self.stdout.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.argv[0]}: no output line within {timeout} s")
        if line is None:
            pytest.fail(f"{self.argv[0]}: stdout ended; stderr: {self.drain_stderr()}")
        return line

    def wait_stderr(self, text: str, timeout: float = WAIT) -> str:
        """Waits for a stderr line containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.stderr.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.argv[0]}: no stderr line with {text!r}: {self.err_lines}")
            if line is None:
                pytest.fail(f"{self.argv[0]}: stderr ended before {text!r}: {self.err_lines}")
            self.err_lines.append(line)
            if text in line:
                return line

    def drain_stderr(self) -> list[str]:
        while True:
            try:
                line = self.stderr.get_nowait()
            except queue.Empty:
                return self.err_lines
            if line is None:
                return self.err_lines
            self.err_lines.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = WAIT) -> int:
        """Closes stdin and waits for the exit status."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def programs() -> Iterator[Callable[[list[str]], Program]]:
    """Starts programs and stops whatever is still running at the end of the test."""
    started: list[Program] = []

    def start(argv: list[str]) -> Program:
        p = Program(argv, env=python_env())
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def python_env() -> dict[str, str]:
    """The environment for `python -m pubsub_client` and the examples, unbuffered."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def python_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pubsub_client", *args]
