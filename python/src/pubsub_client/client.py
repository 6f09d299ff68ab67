"""The blocking client: :class:`Client` and :class:`Subscription`.

Owns one TCP connection at a time and two threads. The reader thread sorts what the
broker sends: replies go to the caller waiting on their ``id``, messages to the bounded
queue (or the callback) of every local subscription whose pattern matches. When the
connection breaks, it reconnects with jittered exponential backoff, says HELLO and
subscribes every pattern again before it lets calls through. The writer thread sends
what ``ack=False`` publishes queued, in batches. The reader never blocks on a
subscriber: a full queue drops and counts the message.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

from ._protocol import (
    DEFAULT_MAX_FRAME,
    INCOMING_SLACK,
    JSON,
    JSONLike,
    LineDecoder,
    Message,
    Welcome,
    backoff_delay,
    encode,
    encode_publish,
    hello_fields,
    message_of,
    parse_addr,
    parse_frame,
    parse_json_text,
    parse_message,
    raw_json,
    welcome_of,
)
from ._routes import Routes
from .errors import (
    FATAL_CODES,
    BrokerError,
    ConnectionLostError,
    FrameTooLarge,
    LocalSlowConsumer,
    NotConnectedError,
    ProtocolError,
    PubSubError,
    SubscriptionClosed,
    Unauthorized,
    error_from_frame,
)

__all__ = ["DEFAULT_QUEUE_SIZE", "DEFAULT_TIMEOUT", "Client", "Subscription"]

log = logging.getLogger("pubsub_client")

#: How long a call waits for its reply, or for a reconnect, unless told otherwise.
DEFAULT_TIMEOUT = 5.0

#: Messages a subscription holds before it drops new ones (as nats-core's default
#: pending limit): about 64k small messages, enough to ride out a slow consumer's pause
#: without letting memory grow without bound.
DEFAULT_QUEUE_SIZE = 65_536

#: First and largest wait between reconnect attempts, in seconds. Each failed attempt
#: doubles the wait up to the largest; every wait is scaled by a random 0.5-1.0 so that
#: many clients cut off together do not come back in step.
DEFAULT_RECONNECT_WAIT = (0.1, 5.0)

#: Bytes asked of each ``recv``: a few hundred small messages per system call.
READ_SIZE = 64 * 1024

#: Frames written but not yet handed to the socket before a publisher has to wait
#: (1 MiB): enough to batch thousands of small ``ack=False`` publishes per system call,
#: and a bound on what a broker that stopped reading can make us hold.
MAX_UNSENT = 1 << 20

Callback = Callable[[Message], object]
ErrorCallback = Callable[[Exception], object]


class Subscription:
    """One local subscription to a pattern.

    Messages wait in a bounded queue for :meth:`next` or iteration, unless the
    subscription has a callback, which then runs on the reader thread for each message
    and must not block. The object survives reconnects: it keeps receiving once the
    client is connected again.
    """

    def __init__(self, client: Client, pattern: str, callback: Callback | None, limit: int) -> None:
        self.pattern = pattern
        self.callback = callback
        #: Messages dropped because the queue was full.
        self.dropped = 0
        self._client = client
        self._limit = limit
        self._items: deque[Message] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._overflowing = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {self.pattern!r} {state} queued={len(self._items)}>"

    @property
    def closed(self) -> bool:
        """True after :meth:`unsubscribe` or the client's ``close()``."""
        return self._closed

    @property
    def pending(self) -> int:
        """Messages queued and not yet taken."""
        return len(self._items)

    def next(self, timeout: float | None = None) -> Message:
        """The next message, waiting up to ``timeout`` seconds (None: no limit).

        Raises ``TimeoutError`` when none came in time, and :class:`SubscriptionClosed`
        once the subscription is closed and its queue is empty.
        """
        if self.callback is not None:
            raise SubscriptionClosed(f"subscription {self.pattern!r} delivers to its callback")
        with self._cond:
            if not self._cond.wait_for(self._ready, timeout):
                raise TimeoutError(f"no message on {self.pattern!r} within {timeout} s")
            if self._items:
                return self._items.popleft()
            raise SubscriptionClosed(f"subscription {self.pattern!r} is closed")

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        try:
            return self.next()
        except SubscriptionClosed:
            raise StopIteration from None

    def unsubscribe(self, timeout: float | None = None) -> None:
        """Stops this subscription. The broker is told when it was the last local
        subscription to its pattern. Messages already queued can still be taken."""
        self._client._unsubscribe(self, timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            with contextlib.suppress(NotConnectedError):
                self.unsubscribe()

    def _ready(self) -> bool:
        return bool(self._items) or self._closed

    def _deliver(self, message: Message) -> Exception | None:
        """Called by the reader thread; returns an error to report, if any."""
        if self.callback is not None:
            try:
                self.callback(message)
            except Exception as e:
                return e
            return None
        with self._cond:
            if self._closed:
                return None
            if len(self._items) >= self._limit:
                self.dropped += 1
                if self._overflowing:
                    return None
                self._overflowing = True
                return LocalSlowConsumer(
                    f"queue of {self.pattern!r} is full ({self._limit} messages); "
                    "dropping messages until it is read",
                    subscription=self,
                )
            self._overflowing = False
            self._items.append(message)
            self._cond.notify()
        return None

    def _close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Client:
    """A connection to a broker that reconnects by itself. Create it with
    :meth:`Client.connect`; use it as a context manager or call :meth:`close`.

    Every method may be called from any thread. Callbacks (``on_disconnect``,
    ``on_reconnect``, ``on_error`` and subscription callbacks) run on the reader thread
    and must not block.
    """

    def __init__(
        self,
        addr: str | tuple[str, int],
        *,
        name: str | None = None,
        token: str | None = None,
        echo: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect: bool = True,
        reconnect_wait: tuple[float, float] = DEFAULT_RECONNECT_WAIT,
        max_reconnect_attempts: int | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_disconnect: Callable[[Exception | None], object] | None = None,
        on_reconnect: Callable[[], object] | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.addr = parse_addr(addr)
        self.name = name
        self.echo = echo
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_wait = reconnect_wait
        self.max_reconnect_attempts = max_reconnect_attempts
        self.queue_size = queue_size
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect
        self.on_error = on_error
        #: Successful reconnects so far.
        self.reconnects = 0
        #: The last WELCOME (None before the first).
        self.welcome: Welcome | None = None
        self._token = token
        self._cond = threading.Condition()
        # The write side: frames queue in `_out` and go out in batches, written by the
        # calling thread when nothing is being written (requests, for low latency) or
        # by the flusher thread (`ack=False` publishes, so a loop of them costs one
        # system call per batch, not per message). `_writing` marks the one thread
        # in `sendall`; `_out_sock` is the socket the queued bytes are for.
        self._wcond = threading.Condition(threading.Lock())
        self._out = bytearray()
        self._out_sock: socket.socket | None = None
        self._writing = False
        self._stopping = False
        self._flusher: threading.Thread | None = None
        self._sub_lock = threading.RLock()
        self._state = "connecting"  # connecting, connected, reconnecting, closed
        self._sock: socket.socket | None = None
        self._next_id = 1
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._routes: Routes[Subscription] = Routes()
        self._close_reason: Exception | None = None
        self._reader: threading.Thread | None = None

    # ---------------------------------------------------------------- connecting

    @classmethod
    def connect(
        cls,
        addr: str | tuple[str, int] = "127.0.0.1:7400",
        *,
        name: str | None = None,
        token: str | None = None,
        echo: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        reconnect: bool = True,
        reconnect_wait: tuple[float, float] = DEFAULT_RECONNECT_WAIT,
        max_reconnect_attempts: int | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_disconnect: Callable[[Exception | None], object] | None = None,
        on_reconnect: Callable[[], object] | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Client:
        """Connects, says HELLO and starts the reader thread.

        ``addr`` is ``"HOST:PORT"`` or ``(host, port)``. ``timeout`` bounds connecting
        and every later call. The first connection is not retried: a broker that
        cannot be reached raises ``OSError`` here, a refused HELLO its
        :class:`BrokerError`. After that, with ``reconnect`` (the default), a lost
        connection is re-established in the background; messages published while it
        is down are lost (the broker keeps no history).
        """
        client = cls(
            addr,
            name=name,
            token=token,
            echo=echo,
            timeout=timeout,
            reconnect=reconnect,
            reconnect_wait=reconnect_wait,
            max_reconnect_attempts=max_reconnect_attempts,
            queue_size=queue_size,
            on_disconnect=on_disconnect,
            on_reconnect=on_reconnect,
            on_error=on_error,
        )
        sock, decoder = client._open()
        with client._cond:
            client._sock = sock
            client._state = "connected"
        client._reader = threading.Thread(
            target=client._run, args=(sock, decoder), name="pubsub-client-reader", daemon=True
        )
        client._reader.start()
        client._flusher = threading.Thread(
            target=client._flush_loop, name="pubsub-client-writer", daemon=True
        )
        client._flusher.start()
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.addr[0]}:{self.addr[1]} {self._state}>"

    @property
    def connected(self) -> bool:
        """True while a connection is up and every subscription is in place."""
        return self._state == "connected"

    @property
    def closed(self) -> bool:
        """True after :meth:`close`, or once the client gave up reconnecting."""
        return self._state == "closed"

    @property
    def max_frame(self) -> int:
        """The longest frame the broker accepts, from its WELCOME."""
        return self.welcome.max_frame if self.welcome else DEFAULT_MAX_FRAME

    def close(self) -> None:
        """Closes the connection and stops reconnecting. Waiting calls raise
        :class:`NotConnectedError`; subscriptions end once their queues are empty."""
        with self._cond:
            if self._state == "closed" and self._reader is None:
                return
            self._state = "closed"
            sock = self._sock
            self._cond.notify_all()
        if sock is not None:
            _shutdown(sock)
        with self._wcond:
            self._stopping = True
            self._wcond.notify_all()
        for thread in (self._reader, self._flusher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=self.timeout)
        self._reader = None
        self._flusher = None
        self._finish(NotConnectedError("client closed"))

    # ---------------------------------------------------------------- commands

    def subscribe(
        self, pattern: str, callback: Callback | None = None, *, timeout: float | None = None
    ) -> Subscription:
        """Subscribes to a channel or pattern (``*`` one token, ``>`` the rest) and
        waits until the broker confirmed it.

        Without ``callback``, read messages with ``sub.next(timeout)`` or by iterating
        over the subscription. With one, ``callback(message)`` runs on the reader thread.
        Several local subscriptions may share a pattern; the broker is told once.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        sub = Subscription(self, pattern, callback, self.queue_size)
        with self._sub_lock:
            with self._cond:
                if self._state == "closed":
                    raise NotConnectedError("client closed")
                first = self._routes.add(pattern, sub)
            if not first:
                return sub
            try:
                self._call({"command": "SUBSCRIBE", "channel": pattern}, deadline)
            except ConnectionLostError:
                # Registered before the connection broke, so the reconnect subscribes it.
                try:
                    self._wait_connected(deadline)
                except NotConnectedError:
                    self._drop(sub)
                    raise
            except BaseException:
                self._drop(sub)
                raise
        return sub

    def publish(
        self, channel: str, message: JSONLike, ack: bool = True, *, timeout: float | None = None
    ) -> int | None:
        """Publishes ``message`` (any JSON value) on ``channel``.

        With ``ack`` (the default) waits for the broker and returns how many
        connections it was queued to; with ``ack=False`` returns None at once and a
        broker-side error is only reported to ``on_error``. While disconnected it waits
        up to ``timeout`` for the reconnect, then raises :class:`NotConnectedError`.
        """
        return self._publish(channel, raw_json(message), ack, timeout)

    def publish_raw(
        self, channel: str, json_text: str, ack: bool = True, *, timeout: float | None = None
    ) -> int | None:
        """:meth:`publish` with the message given as JSON text, sent exactly as
        written (``"1.0"`` stays ``1.0``). Raises ``ValueError`` if it is not JSON."""
        return self._publish(channel, parse_json_text(json_text), ack, timeout)

    def _publish(self, channel: str, raw: str, ack: bool, timeout: float | None) -> int | None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not ack:
            line = encode_publish(channel, raw, None)
            self._check_size(line)
            self._send(self._wait_connected(deadline), line, urgent=False, deadline=deadline)
            return None
        reply = self._call_line(lambda id: encode_publish(channel, raw, id), deadline)
        receivers = reply.get("receivers")
        if not isinstance(receivers, int):
            raise ProtocolError(f"PUBLISHED without receivers: {reply}")
        return receivers

    def ping(self, *, timeout: float | None = None) -> float:
        """Round-trip time to the broker in seconds. Once it returns, every message
        published before the broker saw the PING has been delivered locally."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        start = time.perf_counter()
        self._call({"command": "PING"}, deadline)
        return time.perf_counter() - start

    def stats(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The broker's STATS frame as a dict (docs/protocol.md, "Extension: STATS")."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        frame = self._call({"command": "STATS"}, deadline)
        frame.pop("id", None)
        return frame

    def request(self, fields: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """Sends any command (``{"command": ..., ...}``; the ``id`` is added) and
        returns its reply frame; an ERROR reply raises its :class:`BrokerError`."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._call(dict(fields), deadline)

    # ---------------------------------------------------------------- internals

    def _unsubscribe(self, sub: Subscription, timeout: float | None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._sub_lock:
            with self._cond:
                last = self._routes.remove(sub.pattern, sub)
                connected = self._state == "connected"
            sub._close()
            if last and connected:
                # A connection lost meanwhile took the subscription with it.
                with contextlib.suppress(ConnectionLostError):
                    self._call({"command": "UNSUBSCRIBE", "channel": sub.pattern}, deadline)

    def _drop(self, sub: Subscription) -> None:
        with self._cond:
            self._routes.remove(sub.pattern, sub)
        sub._close()

    def _check_size(self, line: bytes) -> None:
        size = len(line) - 1  # the newline does not count
        if size > self.max_frame:
            raise FrameTooLarge(
                f"frame of {size} bytes is longer than the broker's max_frame {self.max_frame}"
            )

    def _wait_connected(self, deadline: float) -> socket.socket:
        with self._cond:
            while self._state != "connected":
                left = deadline - time.monotonic()
                if self._state == "closed":
                    raise NotConnectedError(self._closed_text())
                if left <= 0 or not self._cond.wait(left):
                    if self._state == "connected":
                        break
                    raise NotConnectedError(
                        f"not connected to {self.addr[0]}:{self.addr[1]} (reconnecting)"
                    )
            assert self._sock is not None
            return self._sock

    def _closed_text(self) -> str:
        if self._close_reason is not None:
            return f"client closed: {self._close_reason}"
        return "client closed"

    def _call(self, fields: dict[str, Any], deadline: float) -> dict[str, Any]:
        def line(id: int) -> bytes:
            fields["id"] = id
            return encode(fields)

        return self._call_line(line, deadline)

    def _call_line(self, make: Callable[[int], bytes], deadline: float) -> dict[str, Any]:
        if threading.current_thread() is self._reader:
            # Only the reader thread could deliver the reply it would wait for.
            raise RuntimeError(
                "a callback cannot wait for the broker's reply (it runs on the reader "
                "thread); use publish(..., ack=False) or another thread"
            )
        future: Future[dict[str, Any]] = Future()
        while True:
            sock = self._wait_connected(deadline)
            with self._cond:
                if self._state != "connected" or self._sock is not sock:
                    continue
                id = self._next_id
                self._next_id += 1
                line = make(id)
                self._check_size(line)
                self._pending[id] = future
            break
        try:
            self._send(sock, line, deadline=deadline)
            return future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            with self._cond:
                self._pending.pop(id, None)
            if future.done():
                return future.result()
            raise TimeoutError("no reply from the broker within the timeout") from None
        finally:
            with self._cond:
                self._pending.pop(id, None)

    def _send(
        self,
        sock: socket.socket,
        line: bytes,
        *,
        urgent: bool = True,
        deadline: float | None = None,
    ) -> None:
        """Queues ``line`` for ``sock``. An urgent line is written before returning
        unless another thread is writing (it then takes this line along); otherwise the
        flusher thread writes it, batched with whatever else is queued by then."""
        with self._wcond:
            if self._out_sock is not sock:
                # Bytes still queued for a previous connection are lost with it.
                self._out.clear()
                self._out_sock = sock
            while len(self._out) >= MAX_UNSENT:
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not self._wcond.wait(left):
                    raise TimeoutError("the broker is not reading what we send")
                if self._out_sock is not sock:
                    raise ConnectionLostError("connection lost while sending")
            self._out += line
            if self._writing:
                return
            if not urgent:
                self._wcond.notify_all()
                return
            self._writing = True
        self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        """Writes the queue until it is empty; the caller has set ``_writing``."""
        while True:
            with self._wcond:
                if not self._out or self._out_sock is not sock:
                    self._writing = False
                    self._wcond.notify_all()
                    return
                data = bytes(self._out)
                self._out.clear()
                self._wcond.notify_all()  # room for publishers waiting on MAX_UNSENT
            try:
                sock.sendall(data)
            except OSError as e:
                with self._wcond:
                    self._writing = False
                    self._out.clear()
                    self._wcond.notify_all()
                raise ConnectionLostError(f"connection lost while sending: {e}") from e

    def _flush_loop(self) -> None:
        """The flusher thread: writes what ``ack=False`` publishes queued."""
        while True:
            with self._wcond:
                self._wcond.wait_for(lambda: self._stopping or (self._out and not self._writing))
                if self._stopping:
                    return
                sock = self._out_sock
                self._writing = True
            if sock is None:
                with self._wcond:
                    self._writing = False
                continue
            # A failed write means the connection is gone; the reader thread sees it.
            with contextlib.suppress(ConnectionLostError):
                self._drain(sock)

    def _report(self, error: Exception) -> None:
        if self.on_error is None:
            log.warning("pubsub_client: %s", error)
            return
        try:
            self.on_error(error)
        except Exception:
            log.exception("on_error callback failed")

    def _open(self) -> tuple[socket.socket, LineDecoder]:
        """Connects, says HELLO, subscribes every local pattern; returns once every
        reply is in. Runs on the caller's thread the first time, the reader's after."""
        self._close_reason = None  # a reason only ever describes the current connection
        sock = socket.create_connection(self.addr, timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            decoder = LineDecoder()
            with self._cond:
                patterns = self._routes.patterns()
                hello_id = self._next_id
                self._next_id += 1 + len(patterns)
            fields = hello_fields(self.name, self._token, self.echo)
            fields["id"] = hello_id
            out = [encode(fields)]
            waiting: dict[int, str] = {}
            for i, pattern in enumerate(patterns, start=hello_id + 1):
                out.append(encode({"command": "SUBSCRIBE", "channel": pattern, "id": i}))
                waiting[i] = pattern
            sock.sendall(b"".join(out))
            welcome: Welcome | None = None
            while welcome is None or waiting:
                data = sock.recv(READ_SIZE)
                if not data:
                    raise self._close_reason or ConnectionLostError(
                        "connection closed by the broker during the handshake"
                    )
                for line in decoder.feed(data):
                    frame = self._handshake_frame(line)
                    if frame is None:
                        continue
                    id = frame.get("id")
                    if id == hello_id:
                        if frame["command"] == "ERROR":
                            raise error_from_frame(frame)
                        welcome = welcome_of(frame)
                        decoder.limit = welcome.max_frame + INCOMING_SLACK
                    elif isinstance(id, int) and id in waiting:
                        pattern = waiting.pop(id)
                        if frame["command"] == "ERROR":
                            self._resubscribe_failed(pattern, error_from_frame(frame))
                    elif frame["command"] == "ERROR" and id is None:
                        raise error_from_frame(frame)
            sock.settimeout(None)
            self.welcome = welcome
            self._close_reason = None
            return sock, decoder
        except BaseException:
            sock.close()
            raise

    def _handshake_frame(self, line: bytes) -> dict[str, Any] | None:
        """A reply frame during the handshake; messages are delivered on the way."""
        found = parse_message(line)
        if found is not None:
            self._dispatch(*found)
            return None
        try:
            frame = parse_frame(line)
        except ValueError as e:
            raise ProtocolError(str(e)) from e
        if frame["command"] == "MESSAGE":
            found = message_of(frame)
            if found is not None:
                self._dispatch(*found)
            return None
        return frame

    def _resubscribe_failed(self, pattern: str, error: BrokerError) -> None:
        with self._cond:
            subs = [s for s in self._routes.all() if s.pattern == pattern]
            for s in subs:
                self._routes.remove(pattern, s)
        for s in subs:
            s._close()
        self._report(error)

    def _dispatch(self, channel: str, message: JSON, raw: str) -> None:
        for sub in self._routes.lookup(channel):
            error = sub._deliver(Message(channel, message, sub.pattern, raw))
            if error is not None:
                self._report(error)

    def _handle(self, line: bytes) -> None:
        found = parse_message(line)
        if found is not None:
            self._dispatch(*found)
            return
        try:
            frame = parse_frame(line)
        except ValueError as e:
            self._report(ProtocolError(str(e)))
            return
        command = frame["command"]
        if command == "MESSAGE":
            found = message_of(frame)
            if found is None:
                self._report(ProtocolError(f"bad MESSAGE frame: {line[:200]!r}"))
            else:
                self._dispatch(*found)
            return
        id = frame.get("id")
        if type(id) is int:
            with self._cond:
                future = self._pending.pop(id, None)
            if future is not None and not future.done():
                if command == "ERROR":
                    future.set_exception(error_from_frame(frame))
                else:
                    future.set_result(frame)
            return
        if command == "ERROR":
            # Not an answer to a call: an `ack: false` publish that failed, or the
            # reason the broker is about to close the connection.
            error = error_from_frame(frame)
            if id is None and error.code in FATAL_CODES:
                self._close_reason = error
            self._report(error)

    def _read(self, sock: socket.socket, decoder: LineDecoder) -> Exception | None:
        """Reads until the connection ends; returns why (None: a plain EOF)."""
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except OSError as e:
                return e
            if not data:
                return None
            try:
                lines = decoder.feed(data)
            except ValueError as e:
                return ProtocolError(str(e))
            for line in lines:
                self._handle(line)

    def _run(self, sock: socket.socket, decoder: LineDecoder) -> None:
        """The reader thread: read, and reconnect when the connection ends."""
        while True:
            error = self._read(sock, decoder)
            reason: Exception | None = self._close_reason or error
            with self._cond:
                closing = self._state == "closed"
                if not closing:
                    self._state = "reconnecting"
                lost = list(self._pending.values())
                self._pending.clear()
                self._cond.notify_all()
            _shutdown(sock)  # a flusher blocked in sendall on it fails at once
            with self._wcond:
                self._wcond.wait_for(lambda: not self._writing, self.timeout)
                if self._out_sock is sock:
                    self._out.clear()
                    self._out_sock = None
                sock.close()
            for future in lost:
                if not future.done():
                    future.set_exception(ConnectionLostError(f"connection lost: {reason or 'EOF'}"))
            if closing:
                return
            self._callback(self.on_disconnect, reason)
            if not self.reconnect or isinstance(reason, Unauthorized):
                self._give_up(reason)
                return
            opened = self._reconnect()
            if opened is None:
                return
            sock, decoder = opened
            with self._cond:
                if self._state == "closed":
                    _shutdown(sock)
                    sock.close()
                    return
                self._sock = sock
                self._state = "connected"
                self.reconnects += 1
                self._cond.notify_all()
            self._callback(self.on_reconnect)

    def _reconnect(self) -> tuple[socket.socket, LineDecoder] | None:
        base, most = self.reconnect_wait
        attempt = 0
        while True:
            delay = backoff_delay(attempt, base, most, random.uniform(0.5, 1.0))
            with self._cond:
                if self._cond.wait_for(lambda: self._state == "closed", delay):
                    return None
            try:
                return self._open()
            except Unauthorized as e:
                self._report(e)
                self._give_up(e)
                return None
            except (OSError, PubSubError) as e:
                log.debug("reconnect attempt %d failed: %s", attempt + 1, e)
            attempt += 1
            if self.max_reconnect_attempts is not None and attempt >= self.max_reconnect_attempts:
                self._give_up(NotConnectedError(f"gave up after {attempt} reconnect attempts"))
                return None

    def _give_up(self, reason: Exception | None) -> None:
        with self._cond:
            if reason is not None:
                self._close_reason = reason
            self._state = "closed"
            self._cond.notify_all()
        with self._wcond:
            self._stopping = True  # ends the flusher thread
            self._wcond.notify_all()
        self._finish(NotConnectedError(self._closed_text()))

    def _finish(self, error: Exception) -> None:
        with self._cond:
            lost = list(self._pending.values())
            self._pending.clear()
            subs = self._routes.clear()
        for future in lost:
            if not future.done():
                future.set_exception(error)
        for sub in subs:
            sub._close()

    def _callback(self, fn: Callable[..., object] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("callback %r failed", fn)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
