"""Publish a numbered, timestamped message to channels at a fixed interval.

The tutorial's publisher loop, written against ``pubsub_client``; its output and
message format are those of the Rust ``publisher`` program::

    python examples/publisher.py news sports --interval 500ms --count 3
    news: {"seq":1,"channel":"news","time":"2024-05-01T12:34:56.789Z",...} -> 2 receivers
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from pubsub_client import BrokerError, Client, NotConnectedError


def parse_duration(text: str) -> float:
    """``500ms``, ``1s``, ``1.5s``, ``2m`` or a bare number of seconds, in seconds."""
    t = text.strip()
    scale = 1.0
    for suffix, s in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], s
            break
    try:
        value = float(t)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration (try 500ms, 1s, 1.5 or 2m)")
    return value * scale


def rfc3339_utc(ms: int) -> str:
    """``ms`` since the Unix epoch as ``2024-05-01T12:34:56.789Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def receivers(n: int) -> str:
    return "1 receiver" if n == 1 else f"{n} receivers"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channels", nargs="*", default=["news"], metavar="CHANNEL")
    parser.add_argument("--addr", default="127.0.0.1:7400", metavar="HOST:PORT")
    parser.add_argument("--token", metavar="T")
    parser.add_argument("--interval", type=parse_duration, default=1.0, metavar="DURATION")
    parser.add_argument("--count", type=int, metavar="N")
    args = parser.parse_args()

    try:
        client = Client.connect(args.addr, name="publisher", token=args.token, timeout=10.0)
    except (OSError, BrokerError) as e:
        print(f"publisher: cannot connect to {args.addr}: {e}", file=sys.stderr)
        return 1
    with client:
        start = time.monotonic()
        seq = 0
        while args.count is None or seq < args.count:
            # Rounds are scheduled from the start, so slow acks do not make the rate drift.
            if seq > 0:
                wait = start + args.interval * seq - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            seq += 1
            for channel in args.channels:
                sent_at_ms = time.time_ns() // 1_000_000
                tick = {
                    "seq": seq,
                    "channel": channel,
                    "time": rfc3339_utc(sent_at_ms),
                    "sent_at_ms": sent_at_ms,
                }
                text = json.dumps(tick, separators=(",", ":"), ensure_ascii=False)
                try:
                    n = client.publish_raw(channel, text)
                except (BrokerError, NotConnectedError, TimeoutError) as e:
                    print(f"publisher: cannot publish to {channel}: {e}", file=sys.stderr)
                    return 1
                assert n is not None
                print(f"{channel}: {text} -> {receivers(n)}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
