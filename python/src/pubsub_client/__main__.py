"""``python -m pubsub_client``: subscribe, publish and ping from the command line.

Owns the subcommands and their output, which are those of the Rust ``client`` program
(src/bin/client.rs) line for line, so scripts can use either. Every protocol exchange
goes through :class:`pubsub_client.Client`.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
from typing import NoReturn

from . import Client, Message
from ._protocol import parse_json_text
from .errors import BadChannel, BrokerError, NotConnectedError

#: Where the programs look for a broker unless ``--addr`` says otherwise.
DEFAULT_ADDR = "127.0.0.1:7400"

#: How long connecting (and each command) may take: 10 s, as the Rust programs.
CONNECT_TIMEOUT = 10.0

EXAMPLES = """\
Examples:
  python -m pubsub_client sub news                      print messages on `news` until Ctrl-C
  python -m pubsub_client sub 'news.*' sports --count 5 stop after 5 messages
  python -m pubsub_client sub news --json               one JSON object per line
  python -m pubsub_client pub news '"hello"'            publish the JSON string "hello"
  python -m pubsub_client pub news hello                not JSON, so also sent as the string "hello"
  python -m pubsub_client pub news '{"temp": 21.5}'     publish a JSON object, text kept exactly
  python -m pubsub_client ping                          round-trip time to the broker
  python -m pubsub_client --addr 10.0.0.5:7400 --token s3cret sub news

Output:
  sub     `CHANNEL: MESSAGE` per message (MESSAGE is the JSON text as published), or
          with --json `{"channel":CHANNEL,"message":MESSAGE}`; `subscribed to CHANNEL`
          goes to stderr once the broker confirmed each subscription.
  pub     `published to N receivers` (N: connections the broker queued it to;
          `1 receiver` for one).
  ping    `pong from ADDR in T ms`.

Exit status: 0 on success, 1 when the broker is unreachable, refuses a command or
closes the connection, 2 on bad arguments."""


class Failure(Exception):
    """A sentence for the user; the program prints it after ``client:`` and exits 1."""


def describe(error: BaseException) -> str:
    """An error as a short sentence, as the Rust ``cli::describe``: broker errors as
    ``CODE: text``, OS errors without their errno."""
    if isinstance(error, BadChannel):
        # The Rust client checks channels itself and says `bad channel: why`; the
        # broker's reason is the same text.
        return f"bad channel: {error.error}"
    if isinstance(error, BrokerError):
        return f"{error.code}: {error.error}" if error.error else error.code
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, TimeoutError):
        return "timed out waiting for the broker"
    return str(error) or type(error).__name__


def message_json(arg: str) -> str:
    """The argument itself when it is JSON (``42``, ``"hi"``, ``{"a":1}``), else the
    argument as a JSON string."""
    try:
        return parse_json_text(arg)
    except ValueError:
        return json.dumps(arg, ensure_ascii=False)


def receivers(n: int) -> str:
    """``1 receiver``, ``2 receivers``."""
    return "1 receiver" if n == 1 else f"{n} receivers"


def format_message(message: Message, as_json: bool) -> str:
    """One output line; the payload's JSON text is printed exactly as received."""
    if as_json:
        channel = json.dumps(message.channel, ensure_ascii=False)
        return f'{{"channel":{channel},"message":{message.raw}}}'
    return f"{message.channel}: {message.raw}"


def print_line(line: str) -> None:
    """Writes one line and flushes it; a closed stdout ends the program quietly."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # `sub news | head -1`: nothing left to do. Point stdout at /dev/null so the
        # interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except OSError as e:
        print(f"cannot write to stdout: {describe(e)}", file=sys.stderr)
        sys.exit(1)


def parser() -> argparse.ArgumentParser:
    # --addr and --token are accepted before or after the subcommand, as with clap's
    # global flags; the subcommand's copy only overrides when given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--addr",
        metavar="HOST:PORT",
        default=argparse.SUPPRESS,
        help=f"broker address, HOST:PORT (default {DEFAULT_ADDR})",
    )
    common.add_argument(
        "--token",
        metavar="T",
        default=argparse.SUPPRESS,
        help="token for a broker started with --token (sent in HELLO)",
    )
    top = argparse.ArgumentParser(
        prog="python -m pubsub_client",
        description="Talk to a pubsub broker: subscribe, publish, ping.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "sub",
        parents=[common],
        help="subscribe to channels and print each message until interrupted (or --count)",
    )
    s.add_argument("channels", nargs="+", metavar="CHANNEL", help="channels or patterns")
    s.add_argument("--json", action="store_true", help="print one JSON object per message")
    s.add_argument("--count", type=int, metavar="N", help="exit after printing N messages")
    p = sub.add_parser(
        "pub",
        parents=[common],
        help="publish one message and print how many connections received it",
    )
    p.add_argument("channel", help="channel to publish on (no wildcards)")
    p.add_argument("message", help="the message: JSON as is, anything else as a JSON string")
    sub.add_parser("ping", parents=[common], help="measure the round-trip time to the broker")
    return top


def connect(addr: str, token: str | None) -> Client:
    try:
        return Client.connect(
            addr, name="client", token=token, timeout=CONNECT_TIMEOUT, reconnect=False
        )
    except BrokerError as e:
        raise Failure(f"broker at {addr} refused HELLO: {describe(e)}") from e
    except (OSError, ValueError, NotConnectedError) as e:
        raise Failure(f"cannot connect to {addr}: {describe(e)}") from e


def run_sub(client: Client, channels: list[str], as_json: bool, count: int | None) -> None:
    # One line per MESSAGE frame, as the Rust client: when several of the patterns
    # match a channel, each local subscription gets the frame, but it is printed once.
    # All subscriptions share the frame's `raw` string, which tells the copies apart.
    incoming: queue.SimpleQueue[Message | BaseException | None] = queue.SimpleQueue()
    last: list[str] = [""]

    def on_message(message: Message) -> None:
        if message.raw is last[0]:
            return
        last[0] = message.raw
        incoming.put(message)

    client.on_disconnect = lambda reason: incoming.put(reason)
    for channel in channels:
        try:
            client.subscribe(channel, on_message)
        except (BrokerError, NotConnectedError, TimeoutError) as e:
            raise Failure(f"cannot subscribe to {channel}: {describe(e)}") from e
        print(f"subscribed to {channel}", file=sys.stderr, flush=True)
    printed = 0
    while count is None or printed < count:
        item = incoming.get()
        if not isinstance(item, Message):
            if item is None:
                raise Failure("connection closed by the broker")
            raise Failure(f"connection closed by the broker ({describe(item)})")
        print_line(format_message(item, as_json))
        printed += 1


def run(args: argparse.Namespace) -> None:
    addr: str = getattr(args, "addr", DEFAULT_ADDR)
    token: str | None = getattr(args, "token", None)
    with connect(addr, token) as client:
        if args.command == "sub":
            run_sub(client, args.channels, args.json, args.count)
        elif args.command == "pub":
            try:
                n = client.publish_raw(args.channel, message_json(args.message))
            except (BrokerError, NotConnectedError, TimeoutError) as e:
                raise Failure(f"cannot publish to {args.channel}: {describe(e)}") from e
            assert n is not None
            print_line(f"published to {receivers(n)}")
        else:
            try:
                rtt = client.ping()
            except (BrokerError, NotConnectedError, TimeoutError) as e:
                raise Failure(describe(e)) from e
            print_line(f"pong from {addr} in {rtt * 1000:.3f} ms")


def main(argv: list[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    try:
        run(args)
    except Failure as e:
        print(f"client: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
