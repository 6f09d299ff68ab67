"""Python client benchmark: a publisher and a subscriber, blocking and asyncio, against
our broker (pubsub_client), Redis (redis-py pubsub) and NATS (nats-py).

Throughput: a subscriber process counts N messages of a 16-byte payload that a
publisher process sends as fast as its client lets it without waiting per message
(ours: ``ack=False``; Redis: pipelines of 100 PUBLISH, since every PUBLISH has a reply;
NATS: ``publish`` then one ``flush``). Messages per second are N over the time from the
first publish to the last message received (both clocks are the machine's monotonic
clock).

Latency: one process, two connections; each sample publishes one message with the
client's default (ours and Redis wait for the broker's reply; NATS does not) and waits
until the subscriber has it. Reported as p50/p99 in microseconds over 2,000 samples.

Every server is started by this script on a free loopback port and stopped at the end;
a server or client library that is missing is reported, not fatal. Requires
``pip install './python[bench]'`` for redis and nats-py, and redis-server/nats-server
on PATH.

    python python/bench/bench_clients.py --runs 3 [--broker target/release/broker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHANNEL = "bench.t"
PAYLOAD = "0123456789abcdef"  # 16 bytes
LATENCY_SAMPLES = 2000
LATENCY_WARMUP = 200


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port}")


@contextlib.contextmanager
def server(system: str, broker: Path) -> Iterator[str]:
    """Starts one server; yields its HOST:PORT."""
    if system == "pubsub":
        proc = subprocess.Popen(
            [str(broker), "--listen", "127.0.0.1:0", "--log-level", "warn"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline().decode() if ready else ""
        addr = line.removeprefix("listening on ").strip()
    else:
        port = free_port()
        if system == "redis":
            argv = [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        else:
            argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        addr = f"127.0.0.1:{port}"
    try:
        yield addr
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------- throughput: subscribers


def subscriber(system: str, mode: str, addr: str, n: int, ready: Any, out: Any) -> None:
    """Subscriber process: signals ``ready`` once subscribed, puts the monotonic time
    of the last of ``n`` messages on ``out``."""
    host, port = addr.rsplit(":", 1)
    if mode == "blocking":
        if system == "pubsub":
            from pubsub_client import Client

            with Client.connect(addr, queue_size=n) as c:
                sub = c.subscribe(CHANNEL)
                ready.set()
                for _ in range(n):
                    sub.next(60)
                out.put(time.monotonic())
        else:
            import redis

            r = redis.Redis(host=host, port=int(port))
            p = r.pubsub()
            p.subscribe(CHANNEL)
            p.get_message(timeout=10)  # the subscribe confirmation
            ready.set()
            got = 0
            for m in p.listen():
                if m["type"] == "message":
                    got += 1
                    if got == n:
                        break
            out.put(time.monotonic())
            p.close()
        return
    asyncio.run(async_subscriber(system, addr, n, ready, out))


async def async_subscriber(system: str, addr: str, n: int, ready: Any, out: Any) -> None:
    host, port = addr.rsplit(":", 1)
    if system == "pubsub":
        from pubsub_client.aio import connect

        async with await connect(addr, queue_size=n) as c:
            sub = await c.subscribe(CHANNEL)
            ready.set()
            for _ in range(n):
                await sub.next(60)
            out.put(time.monotonic())
    elif system == "redis":
        import redis.asyncio as aredis

        r = aredis.Redis(host=host, port=int(port))
        p = r.pubsub()
        await p.subscribe(CHANNEL)
        await p.get_message(timeout=10)
        ready.set()
        got = 0
        async for m in p.listen():
            if m["type"] == "message":
                got += 1
                if got == n:
                    break
        out.put(time.monotonic())
        await p.aclose()
        await r.aclose()
    else:
        import nats

        nc = await nats.connect(f"nats://{addr}", pending_size=64 * 1024 * 1024)
        sub = await nc.subscribe(CHANNEL, pending_msgs_limit=n)
        await nc.flush()
        ready.set()
        got = 0
        async for _ in sub.messages:
            got += 1
            if got == n:
                break
        out.put(time.monotonic())
        await nc.close()


# ---------------------------------------------------------------- throughput: publishers


def publish_blocking(system: str, addr: str, n: int) -> float:
    """Publishes ``n`` messages; returns the monotonic start time."""
    host, port = addr.rsplit(":", 1)
    if system == "pubsub":
        from pubsub_client import Client

        with Client.connect(addr) as c:
            start = time.monotonic()
            for _ in range(n):
                c.publish(CHANNEL, PAYLOAD, ack=False)
            c.ping()
        return start
    import redis

    r = redis.Redis(host=host, port=int(port))
    start = time.monotonic()
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        pipe.publish(CHANNEL, PAYLOAD)
        if i % 100 == 0:
            pipe.execute()
    pipe.execute()
    r.close()
    return start


async def publish_async(system: str, addr: str, n: int) -> float:
    host, port = addr.rsplit(":", 1)
    if system == "pubsub":
        from pubsub_client.aio import connect

        async with await connect(addr) as c:
            start = time.monotonic()
            for _ in range(n):
                await c.publish(CHANNEL, PAYLOAD, ack=False)
            await c.ping()
        return start
    if system == "redis":
        import redis.asyncio as aredis

        r = aredis.Redis(host=host, port=int(port))
        start = time.monotonic()
        pipe = r.pipeline(transaction=False)
        for i in range(1, n + 1):
            pipe.publish(CHANNEL, PAYLOAD)
            if i % 100 == 0:
                await pipe.execute()
        await pipe.execute()
        await r.aclose()
        return start
    import nats

    nc = await nats.connect(f"nats://{addr}")
    data = PAYLOAD.encode()
    start = time.monotonic()
    for _ in range(n):
        await nc.publish(CHANNEL, data)
    await nc.flush()
    await nc.close()
    return start


def throughput(system: str, mode: str, addr: str, n: int) -> float:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    out = ctx.Queue()
    proc = ctx.Process(target=subscriber, args=(system, mode, addr, n, ready, out))
    proc.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("subscriber did not start")
        if mode == "blocking":
            start = publish_blocking(system, addr, n)
        else:
            start = asyncio.run(publish_async(system, addr, n))
        last: float = out.get(timeout=120)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return n / (last - start)


# ---------------------------------------------------------------- latency


def latency_blocking(system: str, addr: str) -> list[float]:
    host, port = addr.rsplit(":", 1)
    samples: list[float] = []
    if system == "pubsub":
        from pubsub_client import Client

        with Client.connect(addr) as s, Client.connect(addr) as p:
            sub = s.subscribe(CHANNEL)
            for i in range(LATENCY_WARMUP + LATENCY_SAMPLES):
                t = time.perf_counter()
                p.publish(CHANNEL, PAYLOAD)
                sub.next(10)
                if i >= LATENCY_WARMUP:
                    samples.append(time.perf_counter() - t)
        return samples
    import redis

    r = redis.Redis(host=host, port=int(port))
    ps = r.pubsub()
    ps.subscribe(CHANNEL)
    ps.get_message(timeout=10)
    for i in range(LATENCY_WARMUP + LATENCY_SAMPLES):
        t = time.perf_counter()
        r.publish(CHANNEL, PAYLOAD)
        while ps.get_message(timeout=10) is None:
            pass
        if i >= LATENCY_WARMUP:
            samples.append(time.perf_counter() - t)
    ps.close()
    r.close()
    return samples


async def latency_async(system: str, addr: str) -> list[float]:
    host, port = addr.rsplit(":", 1)
    samples: list[float] = []
    total = LATENCY_WARMUP + LATENCY_SAMPLES
    if system == "pubsub":
        from pubsub_client.aio import connect

        async with await connect(addr) as s, await connect(addr) as p:
            sub = await s.subscribe(CHANNEL)
            for i in range(total):
                t = time.perf_counter()
                await p.publish(CHANNEL, PAYLOAD)
                await sub.next(10)
                if i >= LATENCY_WARMUP:
                    samples.append(time.perf_counter() - t)
        return samples
    if system == "redis":
        import redis.asyncio as aredis

        r = aredis.Redis(host=host, port=int(port))
        ps = r.pubsub()
        await ps.subscribe(CHANNEL)
        await ps.get_message(timeout=10)
        for i in range(total):
            t = time.perf_counter()
            await r.publish(CHANNEL, PAYLOAD)
            while await ps.get_message(timeout=10) is None:
                pass
            if i >= LATENCY_WARMUP:
                samples.append(time.perf_counter() - t)
        await ps.aclose()
        await r.aclose()
        return samples
    import nats

    s_nc = await nats.connect(f"nats://{addr}")
    p_nc = await nats.connect(f"nats://{addr}")
    sub = await s_nc.subscribe(CHANNEL)
    await s_nc.flush()
    data = PAYLOAD.encode()
    for i in range(total):
        t = time.perf_counter()
        await p_nc.publish(CHANNEL, data)
        await sub.next_msg(timeout=10)
        if i >= LATENCY_WARMUP:
            samples.append(time.perf_counter() - t)
    await s_nc.close()
    await p_nc.close()
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- driver


def available(system: str) -> str | None:
    """Why ``system`` cannot be measured here, or None."""
    need = {"redis": ("redis-server", "redis"), "nats": ("nats-server", "nats")}
    if system == "pubsub":
        return None
    binary, module = need[system]
    if shutil.which(binary) is None:
        return f"{binary} not installed"
    try:
        __import__(module)
    except ImportError:
        return f"python package for {module} not installed"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-n", "--messages", type=int, default=50_000)
    parser.add_argument("--broker", type=Path, default=REPO / "target" / "release" / "broker")
    parser.add_argument("--systems", default="pubsub,redis,nats")
    args = parser.parse_args()

    cells: list[tuple[str, str]] = []
    rows: list[str] = []
    for system in args.systems.split(","):
        reason = available(system)
        if reason:
            print(f"# {system}: skipped ({reason})", file=sys.stderr)
            continue
        cells += [(system, "blocking"), (system, "asyncio")]
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {c: [] for c in cells}
    # Runs are interleaved (every cell once, then again) so that a change in the
    # machine's load spreads over all cells instead of biasing one.
    for run in range(args.runs):
        for system, mode in cells:
            if system == "nats" and mode == "blocking":
                continue
            with server(system, args.broker) as addr:
                rate = throughput(system, mode, addr, args.messages)
                if mode == "blocking":
                    samples = latency_blocking(system, addr)
                else:
                    samples = asyncio.run(latency_async(system, addr))
            p50, p99 = percentile(samples, 0.50) * 1e6, percentile(samples, 0.99) * 1e6
            results[(system, mode)].append((rate, p50, p99))
            print(
                f"# run {run + 1}: {system} {mode}: {rate:,.0f} msg/s, "
                f"p50 {p50:.0f} us, p99 {p99:.0f} us",
                file=sys.stderr,
                flush=True,
            )
    names = {"pubsub": "pubsub_client", "redis": "redis-py", "nats": "nats-py"}
    for system, mode in cells:
        got = results[(system, mode)]
        if not got:
            rows.append(f"| {names[system]} | {mode} | n/a (asyncio only) | | |")
            continue
        rate = statistics.median(r[0] for r in got)
        p50 = statistics.median(r[1] for r in got)
        p99 = statistics.median(r[2] for r in got)
        rows.append(f"| {names[system]} | {mode} | {rate:,.0f} | {p50:.0f} | {p99:.0f} |")
    print(f"Median of {args.runs} runs; {args.messages:,} messages of 16 bytes per run.\n")
    print("| client | API | msgs/s (pub -> sub) | RTT p50 µs | RTT p99 µs |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
