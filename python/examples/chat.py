"""A two-way chat over the broker, one room per channel; talks with the Rust ``chat``.

The tutorial's threaded chat, written against ``pubsub_client``: the main thread reads
stdin and publishes, the client's reader thread prints incoming lines, so they never
wait for typing. Wire format, commands and output are those of the Rust ``chat``::

    python examples/chat.py --name alice --room lobby
    cargo run --release --bin chat -- --name bob --room lobby

Room ROOM is channel ``chat.ROOM``; each line is published as
``{"sender":"alice","text":"hello","time":"2024-05-01T12:34:56.789Z"}`` and shown as
``[12:34:56] alice: hello`` (UTC), prefixed with ``#room`` when you are in several rooms.
Commands: /join ROOM, /leave [ROOM], /rooms, /quit, /help, //text sends /text. Status
lines go to stderr. Unlike the Rust chat, it reconnects when the broker goes away.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timezone

from pubsub_client import BrokerError, Client, Message, NotConnectedError, Subscription

ROOM_PREFIX = "chat."


def now_utc() -> str:
    ms = time.time_ns() // 1_000_000
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def clock_of(stamp: object) -> str | None:
    """``HH:MM:SS`` out of an RFC 3339 time, when it is one."""
    if not isinstance(stamp, str) or len(stamp) < 19 or stamp[10] != "T":
        return None
    clock = stamp[11:19]
    ok = all(c == ":" if i in (2, 5) else c.isdigit() for i, c in enumerate(clock))
    return clock if ok else None


def printable(text: str) -> str:
    """Control characters become spaces, so one message stays one terminal line."""
    return "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in text)


def status(text: str) -> None:
    print(f"* {text}", file=sys.stderr, flush=True)


class Chat:
    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        # Joined rooms in join order; the last one is where lines go.
        self.rooms: dict[str, Subscription] = {}
        self.lock = threading.Lock()

    def show(self, message: Message) -> None:
        """Runs on the reader thread for every incoming line."""
        body = message.message
        if (
            isinstance(body, dict)
            and isinstance(body.get("sender"), str)
            and isinstance(body.get("text"), str)
        ):
            sender, text, clock = str(body["sender"]), str(body["text"]), clock_of(body.get("time"))
        else:
            sender = "?"
            text = body if isinstance(body, str) else message.raw
            clock = None
        clock = clock or time.strftime("%H:%M:%S", time.gmtime())
        line = f"[{clock}] {printable(sender)}: {printable(text)}"
        if len(self.rooms) > 1:
            room = message.channel.removeprefix(ROOM_PREFIX)
            line = f"#{room} {line}"
        with self.lock:
            print(line, flush=True)

    def join(self, room: str) -> None:
        if room in self.rooms:
            self.rooms[room] = self.rooms.pop(room)  # make it current
        else:
            self.rooms[room] = self.client.subscribe(ROOM_PREFIX + room, self.show)
        status(f"joined {room}")

    def leave(self, room: str) -> None:
        sub = self.rooms.pop(room, None)
        if sub is None:
            status(f"you are not in {room}")
            return
        sub.unsubscribe()
        current = self.current()
        if current is None:
            status(f"left {room}; /join a room to talk")
        else:
            status(f"left {room}; your lines now go to {current}")

    def current(self) -> str | None:
        return next(reversed(self.rooms), None)

    def send(self, text: str) -> None:
        room = self.current()
        if room is None:
            status("you are not in any room; /join ROOM first")
            return
        line = {"sender": self.name, "text": text, "time": now_utc()}
        try:
            self.client.publish(ROOM_PREFIX + room, line)
        except BrokerError as e:
            status(f"not sent: {e}")
        except (NotConnectedError, TimeoutError) as e:
            status(f"not sent: {e}")

    def handle(self, line: str) -> bool:
        """One line of input; False to quit."""
        if not line.strip():
            return True
        if line.startswith("//"):
            self.send(line[1:])
            return True
        if not line.startswith("/"):
            self.send(line)
            return True
        words = line[1:].split()
        verb = words[0] if words else ""
        arg = words[1] if len(words) > 1 else None
        if verb in ("quit", "exit"):
            return False
        if verb == "join":
            if arg is None:
                status("usage: /join ROOM")
            else:
                try:
                    self.join(arg)
                except BrokerError as e:
                    status(f"bad room name '{arg}': {e}")
        elif verb in ("leave", "part"):
            room = arg or self.current()
            if room is None:
                status("you are not in any room")
            else:
                self.leave(room)
        elif verb == "rooms":
            current = self.current()
            if current is None:
                status("you are not in any room")
            else:
                status(f"rooms: {', '.join(self.rooms)} (your lines go to {current})")
        elif verb == "help":
            status("commands: /join ROOM, /leave [ROOM], /rooms, /quit, //text sends /text")
        else:
            status(f"unknown command /{verb} (try /help)")
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description="Chat with others through a pubsub broker.")
    parser.add_argument("--addr", default="127.0.0.1:7400", metavar="HOST:PORT")
    parser.add_argument("--token", metavar="T")
    parser.add_argument("--name", default=os.environ.get("USER", "anonymous"))
    parser.add_argument("--room", action="append", dest="rooms", metavar="ROOM")
    args = parser.parse_args()
    name = args.name.strip()
    if not name:
        print("chat: --name must not be empty", file=sys.stderr)
        return 2

    try:
        client = Client.connect(
            args.addr,
            name=name,
            token=args.token,
            echo=False,  # the broker never sends our own lines back
            timeout=10.0,
            on_disconnect=lambda reason: status(f"connection lost ({reason}); reconnecting"),
            on_reconnect=lambda: status("reconnected"),
        )
    except (OSError, BrokerError) as e:
        print(f"chat: cannot connect to {args.addr}: {e}", file=sys.stderr)
        return 1
    with client:
        status(f"connected to {args.addr} as {name}; type /help for commands")
        chat = Chat(client, name)
        for room in args.rooms or ["lobby"]:
            try:
                chat.join(room)
            except BrokerError as e:
                print(f"chat: cannot join {room}: {e}", file=sys.stderr)
                return 1
        for raw in sys.stdin:
            if not chat.handle(raw.rstrip("\r\n")):
                break
        # Every line was acknowledged before the next was read: leaving loses nothing.
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
