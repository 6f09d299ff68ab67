"""The asyncio client: :func:`connect`, :class:`Client` and :class:`Subscription`.

Owns one connection at a time and a reader task that sorts what the broker sends:
replies resolve the future waiting on their ``id``, messages go to the bounded queue of
every local subscription whose pattern matches. When the connection breaks, the reader
task reconnects with jittered exponential backoff, says HELLO and subscribes every
pattern again before it lets calls through. It never awaits a subscriber: a full queue
drops and counts the message. The same rules as the blocking client (``client.py``),
on one event loop instead of a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
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
from .client import DEFAULT_QUEUE_SIZE, DEFAULT_RECONNECT_WAIT, DEFAULT_TIMEOUT, READ_SIZE
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

__all__ = ["Client", "Subscription", "connect"]

log = logging.getLogger("pubsub_client")

#: A subscription callback: a plain function or a coroutine function.
Callback = Callable[[Message], object]
ErrorCallback = Callable[[Exception], object]


class Subscription:
    """One local subscription to a pattern (asyncio).

    Messages wait in a bounded queue for ``await sub.next()`` or ``async for``. With a
    callback, a task of the subscription's own takes them from that queue and calls it
    (awaiting it when it is a coroutine function), so a slow callback fills only its
    own queue. The object survives reconnects.
    """

    def __init__(self, client: Client, pattern: str, callback: Callback | None, limit: int) -> None:
        self.pattern = pattern
        self.callback = callback
        #: Messages dropped because the queue was full.
        self.dropped = 0
        self._client = client
        self._limit = limit
        self._items: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._overflowing = False
        self._worker: asyncio.Task[None] | None = None
        if callback is not None:
            self._worker = asyncio.get_running_loop().create_task(self._run_callback(callback))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<aio.Subscription {self.pattern!r} {state} queued={len(self._items)}>"

    @property
    def closed(self) -> bool:
        """True after :meth:`unsubscribe` or the client's ``close()``."""
        return self._closed

    @property
    def pending(self) -> int:
        """Messages queued and not yet taken."""
        return len(self._items)

    async def next(self, timeout: float | None = None) -> Message:
        """The next message, waiting up to ``timeout`` seconds (None: no limit).

        Raises ``TimeoutError`` when none came in time, and :class:`SubscriptionClosed`
        once the subscription is closed and its queue is empty.
        """
        if not self._items and not self._closed:
            try:
                await asyncio.wait_for(self._wait(), timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no message on {self.pattern!r} within {timeout} s") from None
        if self._items:
            return self._items.popleft()
        raise SubscriptionClosed(f"subscription {self.pattern!r} is closed")

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.next()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Stops this subscription; the broker is told when it was the last local one
        for its pattern. Messages already queued can still be taken."""
        await self._client._unsubscribe(self, timeout)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            with contextlib.suppress(NotConnectedError):
                await self.unsubscribe()

    async def _wait(self) -> None:
        while not self._items and not self._closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deliver(self, message: Message) -> Exception | None:
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
        self._wake()
        return None

    def _close(self) -> None:
        self._closed = True
        self._wake()

    async def _run_callback(self, callback: Callback) -> None:
        while True:
            try:
                message = await self.next()
            except SubscriptionClosed:
                return
            try:
                result = callback(message)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                self._client._report(e)


async def connect(
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
    """Connects, says HELLO and starts the reader task; see ``pubsub_client.Client.connect``
    for the options. Use as ``async with await connect(...) as client``.

    Callbacks may be plain functions or coroutine functions; ``on_disconnect``,
    ``on_reconnect`` and ``on_error`` run in the reader task and must not block.
    """
    client = Client(
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
    reader, writer = await client._open()
    client._writer = writer
    client._state = "connected"
    client._connected.set()
    client._task = asyncio.get_running_loop().create_task(client._run(reader, writer))
    return client


class Client:
    """An asyncio connection to a broker that reconnects by itself; create it with
    :func:`connect`."""

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
        self._state = "connecting"
        self._connected = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_id = 1
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._routes: Routes[Subscription] = Routes()
        self._sub_lock = asyncio.Lock()
        self._close_reason: Exception | None = None
        self._decoder = LineDecoder()
        # Frames queued for the writer (see _send).
        self._out = bytearray()
        self._flush_handle: asyncio.Handle | None = None
        # Async callbacks in flight (kept so the loop does not collect them early).
        self._tasks: set[asyncio.Future[None]] = set()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<aio.Client {self.addr[0]}:{self.addr[1]} {self._state}>"

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

    async def close(self) -> None:
        """Closes the connection and stops reconnecting."""
        if self._state == "closed" and self._task is None:
            return
        self._state = "closed"
        self._connected.clear()
        self._closed_event.set()
        writer = self._writer
        if writer is not None:
            writer.close()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(task, self.timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        self._finish(NotConnectedError("client closed"))

    # ---------------------------------------------------------------- commands

    async def subscribe(
        self, pattern: str, callback: Callback | None = None, *, timeout: float | None = None
    ) -> Subscription:
        """Subscribes and waits for the broker's confirmation; see the blocking
        ``Client.subscribe``. ``callback`` may be a coroutine function."""
        deadline = self._deadline(timeout)
        sub = Subscription(self, pattern, callback, self.queue_size)
        async with self._sub_lock:
            if self._state == "closed":
                sub._close()
                raise NotConnectedError("client closed")
            if not self._routes.add(pattern, sub):
                return sub
            try:
                await self._call({"command": "SUBSCRIBE", "channel": pattern}, deadline)
            except ConnectionLostError:
                try:
                    await self._wait_connected(deadline)
                except NotConnectedError:
                    self._drop(sub)
                    raise
            except BaseException:
                self._drop(sub)
                raise
        return sub

    async def publish(
        self, channel: str, message: JSONLike, ack: bool = True, *, timeout: float | None = None
    ) -> int | None:
        """Publishes ``message``; see the blocking ``Client.publish``."""
        return await self._publish(channel, raw_json(message), ack, timeout)

    async def publish_raw(
        self, channel: str, json_text: str, ack: bool = True, *, timeout: float | None = None
    ) -> int | None:
        """Publishes JSON text exactly as written; raises ``ValueError`` if not JSON."""
        return await self._publish(channel, parse_json_text(json_text), ack, timeout)

    async def _publish(
        self, channel: str, raw: str, ack: bool, timeout: float | None
    ) -> int | None:
        deadline = self._deadline(timeout)
        if not ack:
            line = encode_publish(channel, raw, None)
            self._check_size(line)
            writer = await self._wait_connected(deadline)
            await self._send(writer, line, urgent=False)
            return None
        reply = await self._call_line(lambda id: encode_publish(channel, raw, id), deadline)
        receivers = reply.get("receivers")
        if not isinstance(receivers, int):
            raise ProtocolError(f"PUBLISHED without receivers: {reply}")
        return receivers

    async def ping(self, *, timeout: float | None = None) -> float:
        """Round-trip time to the broker in seconds."""
        deadline = self._deadline(timeout)
        start = time.perf_counter()
        await self._call({"command": "PING"}, deadline)
        return time.perf_counter() - start

    async def stats(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The broker's STATS frame as a dict."""
        frame = await self._call({"command": "STATS"}, self._deadline(timeout))
        frame.pop("id", None)
        return frame

    async def request(
        self, fields: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Sends any command and returns its reply; an ERROR raises its BrokerError."""
        return await self._call(dict(fields), self._deadline(timeout))

    # ---------------------------------------------------------------- internals

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    async def _unsubscribe(self, sub: Subscription, timeout: float | None) -> None:
        deadline = self._deadline(timeout)
        async with self._sub_lock:
            last = self._routes.remove(sub.pattern, sub)
            sub._close()
            if last and self._state == "connected":
                with contextlib.suppress(ConnectionLostError):
                    await self._call({"command": "UNSUBSCRIBE", "channel": sub.pattern}, deadline)

    def _drop(self, sub: Subscription) -> None:
        self._routes.remove(sub.pattern, sub)
        sub._close()

    def _check_size(self, line: bytes) -> None:
        size = len(line) - 1
        if size > self.max_frame:
            raise FrameTooLarge(
                f"frame of {size} bytes is longer than the broker's max_frame {self.max_frame}"
            )

    def _closed_text(self) -> str:
        if self._close_reason is not None:
            return f"client closed: {self._close_reason}"
        return "client closed"

    async def _wait_connected(self, deadline: float) -> asyncio.StreamWriter:
        while True:
            if self._state == "closed":
                raise NotConnectedError(self._closed_text())
            if self._state == "connected" and self._writer is not None:
                return self._writer
            left = deadline - time.monotonic()
            if left <= 0:
                raise NotConnectedError(
                    f"not connected to {self.addr[0]}:{self.addr[1]} (reconnecting)"
                )
            waits = [
                asyncio.ensure_future(self._connected.wait()),
                asyncio.ensure_future(self._closed_event.wait()),
            ]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _call(self, fields: dict[str, Any], deadline: float) -> dict[str, Any]:
        def line(id: int) -> bytes:
            fields["id"] = id
            return encode(fields)

        return await self._call_line(line, deadline)

    async def _call_line(self, make: Callable[[int], bytes], deadline: float) -> dict[str, Any]:
        writer = await self._wait_connected(deadline)
        id = self._next_id
        self._next_id += 1
        line = make(id)
        self._check_size(line)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        try:
            await self._send(writer, line)
            return await asyncio.wait_for(
                asyncio.shield(future), max(0.0, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            if future.done():
                return future.result()
            raise TimeoutError("no reply from the broker within the timeout") from None
        finally:
            self._pending.pop(id, None)

    async def _send(
        self, writer: asyncio.StreamWriter, line: bytes, *, urgent: bool = True
    ) -> None:
        """Queues ``line``. Urgent lines (requests) are written at once with whatever
        is queued before them; ``ack=False`` publishes are written together once the
        loop gets to it, or when READ_SIZE bytes have piled up, so a loop of them costs
        one system call per batch."""
        if writer.is_closing() or writer is not self._writer:
            raise ConnectionLostError("connection lost")
        self._out += line
        if not urgent and len(self._out) < READ_SIZE:
            if self._flush_handle is None:
                self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
            return
        self._flush()
        try:
            if writer.transport.get_write_buffer_size() > READ_SIZE:
                await writer.drain()
        except (OSError, RuntimeError) as e:
            raise ConnectionLostError(f"connection lost while sending: {e}") from e

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        writer = self._writer
        if self._out and writer is not None and not writer.is_closing():
            writer.write(bytes(self._out))
        self._out.clear()

    def _report(self, error: Exception) -> None:
        if self.on_error is None:
            log.warning("pubsub_client: %s", error)
            return
        self._callback(self.on_error, error)

    def _callback(self, fn: Callable[..., object] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(_logged(result))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("callback %r failed", fn)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connects, says HELLO and subscribes every local pattern; returns once every
        reply is in."""
        self._close_reason = None  # a reason only ever describes the current connection
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.addr), self.timeout)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._decoder = LineDecoder()
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
            writer.write(b"".join(out))
            welcome: Welcome | None = None
            deadline = self._deadline(None)
            while welcome is None or waiting:
                left = deadline - time.monotonic()
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), max(left, 0.0))
                except asyncio.TimeoutError:
                    raise TimeoutError("no WELCOME from the broker within the timeout") from None
                if not data:
                    raise self._close_reason or ConnectionLostError(
                        "connection closed by the broker during the handshake"
                    )
                for line in self._decoder.feed(data):
                    frame = self._handshake_frame(line)
                    if frame is None:
                        continue
                    id = frame.get("id")
                    if id == hello_id:
                        if frame["command"] == "ERROR":
                            raise error_from_frame(frame)
                        welcome = welcome_of(frame)
                        self._decoder.limit = welcome.max_frame + INCOMING_SLACK
                    elif isinstance(id, int) and id in waiting:
                        pattern = waiting.pop(id)
                        if frame["command"] == "ERROR":
                            self._resubscribe_failed(pattern, error_from_frame(frame))
                    elif frame["command"] == "ERROR" and id is None:
                        raise error_from_frame(frame)
            self.welcome = welcome
            self._close_reason = None
            return reader, writer
        except BaseException:
            writer.close()
            raise

    def _handshake_frame(self, line: bytes) -> dict[str, Any] | None:
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
        subs = [s for s in self._routes.all() if s.pattern == pattern]
        for s in subs:
            self._routes.remove(pattern, s)
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
            future = self._pending.pop(id, None)
            if future is not None and not future.done():
                if command == "ERROR":
                    future.set_exception(error_from_frame(frame))
                else:
                    future.set_result(frame)
            return
        if command == "ERROR":
            error = error_from_frame(frame)
            if id is None and error.code in FATAL_CODES:
                self._close_reason = error
            self._report(error)

    async def _read(self, reader: asyncio.StreamReader) -> Exception | None:
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError as e:
                return e
            if not data:
                return None
            try:
                lines = self._decoder.feed(data)
            except ValueError as e:
                return ProtocolError(str(e))
            for line in lines:
                self._handle(line)

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            error = await self._read(reader)
            reason: Exception | None = self._close_reason or error
            closing = self._state == "closed"
            if not closing:
                self._state = "reconnecting"
                self._connected.clear()
            writer.close()
            self._flush()  # drops what was queued for the lost connection
            lost = list(self._pending.values())
            self._pending.clear()
            for future in lost:
                if not future.done():
                    future.set_exception(ConnectionLostError(f"connection lost: {reason or 'EOF'}"))
            if closing:
                return
            self._callback(self.on_disconnect, reason)
            if not self.reconnect or isinstance(reason, Unauthorized):
                self._give_up(reason)
                return
            opened = await self._reconnect()
            if opened is None:
                return
            reader, writer = opened
            if self._state == "closed":
                writer.close()
                return
            self._writer = writer
            self._state = "connected"
            self.reconnects += 1
            self._connected.set()
            self._callback(self.on_reconnect)

    async def _reconnect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        base, most = self.reconnect_wait
        attempt = 0
        while True:
            delay = backoff_delay(attempt, base, most, random.uniform(0.5, 1.0))
            try:
                await asyncio.wait_for(self._closed_event.wait(), delay)
                return None
            except asyncio.TimeoutError:
                pass
            try:
                return await self._open()
            except Unauthorized as e:
                self._report(e)
                self._give_up(e)
                return None
            except (OSError, PubSubError, asyncio.TimeoutError) as e:
                log.debug("reconnect attempt %d failed: %s", attempt + 1, e)
            attempt += 1
            if self.max_reconnect_attempts is not None and attempt >= self.max_reconnect_attempts:
                self._give_up(NotConnectedError(f"gave up after {attempt} reconnect attempts"))
                return None

    def _give_up(self, reason: Exception | None) -> None:
        if reason is not None:
            self._close_reason = reason
        self._state = "closed"
        self._connected.clear()
        self._closed_event.set()
        self._finish(NotConnectedError(self._closed_text()))

    def _finish(self, error: Exception) -> None:
        lost = list(self._pending.values())
        self._pending.clear()
        for future in lost:
            if not future.done():
                future.set_exception(error)
        for sub in self._routes.clear():
            sub._close()


async def _logged(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("callback failed")
