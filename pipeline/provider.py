"""What every cloud provider adapter shares: its API key, how an HTTP status is classified, and
the per-provider cap on calls in flight.

Retries belong to the pipeline, not to the SDKs: every adapter builds its client with the SDK's
own retries off, so there is one retry policy (``stages.retry_delay``: exponential backoff with
jitter, counted on the call as ``attempts`` and ``next_attempt_at``) that an operator can see.
An adapter turns each vendor failure into a ``ProviderError`` once, in its own module:

    429, 408, 5xx (and Anthropic's 529 "overloaded"), timeouts, connection errors → retryable
    any other 4xx (bad key, unsupported audio, bad request)                    → not retryable
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from ingestd import errors

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def api_key(variable: str) -> str:
    """The provider key from the environment; a non-retryable ProviderError when it is unset."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise errors.ProviderError(f"{variable} is not set", retryable=False)
    return value


def retryable_status(status: int | None) -> bool:
    """Whether an HTTP status means "try again later" (no status: the request never got one)."""
    return status is None or status in RETRYABLE_STATUS or status >= 500


def transport_failure(vendor: str, exc: httpx.TransportError,
                      timeout: float) -> errors.ProviderError:
    """A timeout or a connection failure on the way to ``vendor``: retryable either way."""
    if isinstance(exc, httpx.TimeoutException):
        return errors.ProviderError(f"{vendor} did not answer within {timeout:g} s",
                                    retryable=True)
    return errors.ProviderError(f"could not reach {vendor}: {exc}", retryable=True)


class ProviderSlots:
    """At most ``limit`` calls in flight per provider name, across all workers of one event loop.

    Semaphores belong to the loop that created them, so they are kept per running loop (tests
    run several loops one after another; the daemon runs one).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                  dict[str, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary())

    @asynccontextmanager
    async def hold(self, provider: str) -> AsyncIterator[None]:
        """Wait for a free slot of ``provider`` and keep it for the block."""
        semaphores = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        semaphore = semaphores.setdefault(provider, asyncio.Semaphore(self.limit))
        async with semaphore:
            yield


_shared: dict[int, ProviderSlots] = {}


def shared_slots(limit: int) -> ProviderSlots:
    """The process-wide slots for ``limit`` (workers of one daemon share them)."""
    return _shared.setdefault(limit, ProviderSlots(limit))
