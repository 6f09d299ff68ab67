"""The local subscription table: which local subscriptions a MESSAGE goes to.

Owns the pattern -> subscriptions map and its reference counts: a pattern is
subscribed at the broker once, however many local subscriptions share it, and
unsubscribed when the last one leaves. MESSAGE frames carry no subscription id and the
broker sends each message once per connection, so the client matches the channel
against every local pattern itself. Writers hold their client's lock; the reader looks
up an immutable snapshot, so it never waits for a writer.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._protocol import is_wildcard, matches_tokens, split_pattern

S = TypeVar("S")


class Routes(Generic[S]):
    """Local subscriptions by pattern. Not thread-safe for writers: callers serialise
    ``add`` and ``remove``; ``lookup`` may run concurrently with them."""

    def __init__(self) -> None:
        self._by_pattern: dict[str, list[S]] = {}
        # Snapshots for lookup, rebuilt on every change (changes are rare, lookups are
        # per message).
        self._exact: dict[str, tuple[S, ...]] = {}
        self._wild: tuple[tuple[tuple[str, ...], tuple[S, ...]], ...] = ()

    def add(self, pattern: str, sub: S) -> bool:
        """Adds ``sub``; True when it is the pattern's first local subscription (so
        the broker must be told)."""
        subs = self._by_pattern.setdefault(pattern, [])
        subs.append(sub)
        self._rebuild()
        return len(subs) == 1

    def remove(self, pattern: str, sub: S) -> bool:
        """Removes ``sub``; True when it was the pattern's last one (so the broker must
        be told). Removing something absent changes nothing and returns False."""
        subs = self._by_pattern.get(pattern)
        if subs is None or sub not in subs:
            return False
        subs.remove(sub)
        if subs:
            self._rebuild()
            return False
        del self._by_pattern[pattern]
        self._rebuild()
        return True

    def patterns(self) -> list[str]:
        """Every pattern with at least one local subscription, in subscription order."""
        return list(self._by_pattern)

    def all(self) -> list[S]:
        """Every local subscription."""
        return [s for subs in self._by_pattern.values() for s in subs]

    def clear(self) -> list[S]:
        """Removes everything; returns what was there."""
        subs = self.all()
        self._by_pattern.clear()
        self._rebuild()
        return subs

    def count(self, pattern: str) -> int:
        """How many local subscriptions share ``pattern``."""
        return len(self._by_pattern.get(pattern, ()))

    def lookup(self, channel: str) -> list[S]:
        """Every local subscription whose pattern matches ``channel``."""
        exact = self._exact.get(channel)
        found = list(exact) if exact else []
        wild = self._wild
        if wild:
            tokens = channel.split(".")
            for pattern, subs in wild:
                if matches_tokens(pattern, tokens):
                    found.extend(subs)
        return found

    def _rebuild(self) -> None:
        exact: dict[str, tuple[S, ...]] = {}
        wild: list[tuple[tuple[str, ...], tuple[S, ...]]] = []
        for pattern, subs in self._by_pattern.items():
            if is_wildcard(pattern):
                wild.append((split_pattern(pattern), tuple(subs)))
            else:
                exact[pattern] = tuple(subs)
        self._exact = exact
        self._wild = tuple(wild)
