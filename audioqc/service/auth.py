"""API keys: compared in constant time; a job belongs to the hash of the key that made it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["KeyRing"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """The accepted keys.

    :meth:`owner` compares the SHA-256 of the presented key with every accepted key's, with
    :func:`hmac.compare_digest` and without stopping at a match, so neither the time taken nor
    the key's length tells an attacker anything. A job row stores the owner (a hash prefix of the
    key), never the key.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys]

    def owner(self, presented: str | None) -> str | None:
        """The owner id of ``presented`` (a hex string), or None when it is no accepted key."""
        if not presented:
            return None
        d = _digest(presented)
        found = None
        for accepted in self._digests:
            if hmac.compare_digest(d, accepted):
                found = accepted
        return found.hex()[:32] if found is not None else None
