"""Dynamic batching: concurrent requests share one forward pass, at a bounded latency cost.

One worker task takes the oldest waiting request, then keeps collecting requests until the group
holds ``max_batch_size`` pairs or ``max_wait_ms`` have passed since it took the first; it scores
the group in one call (in a thread, so the server keeps accepting requests meanwhile) and
resolves each request's future with its own scores. A request waits at most ``max_wait_ms`` plus
the group's forward pass. ``max_batch_size`` 1 or ``max_wait_ms`` 0 turns batching off: one
request per forward pass. A request of more pairs than ``max_batch_size`` runs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tuning.serving.scorer import Pair

ScoreFn = Callable[[list[Pair]], "Sequence[float] | np.ndarray"]


@dataclass
class BatchStats:
    """Counters since start-up, for ``GET /stats``."""

    requests: int = 0
    """Requests scored (a batch request counts once)."""
    pairs: int = 0
    """Sentence pairs scored."""
    batches: int = 0
    """Groups of requests scored together in one call of the model."""
    multi_request_batches: int = 0
    """Batches that held more than one request: the work of dynamic batching."""
    largest_batch_requests: int = 0
    """Most requests in one batch."""
    largest_batch_pairs: int = 0
    """Most pairs in one batch."""

    def record(self, requests: int, pairs: int) -> None:
        self.requests += requests
        self.pairs += pairs
        self.batches += 1
        self.multi_request_batches += requests > 1
        self.largest_batch_requests = max(self.largest_batch_requests, requests)
        self.largest_batch_pairs = max(self.largest_batch_pairs, pairs)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Job:
    pairs: list[Pair]
    future: asyncio.Future[list[float]]


class DynamicBatcher:
    """A queue and one worker that groups requests; use inside a running event loop.

    Args:
        score: scores a list of pairs (blocking; run in a worker thread), in order.
        max_batch_size: most pairs per group.
        max_wait_ms: longest wait for more requests after the first of a group (milliseconds).
    """

    def __init__(self, score: ScoreFn, max_batch_size: int, max_wait_ms: float) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError(
                f"need max_batch_size >= 1 and max_wait_ms >= 0, got ({max_batch_size=}, {max_wait_ms=})."
            )
        self.score = score
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._held: _Job | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests may share a forward pass."""
        return self.max_batch_size > 1 and self.max_wait_ms > 0

    def settings(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
        }

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail with ``RuntimeError``."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        waiting = [self._held] if self._held else []
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    async def submit(self, pairs: list[Pair]) -> list[float]:
        """Scores of ``pairs``, computed with whatever other requests arrive meanwhile."""
        if self._queue is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(pairs, future))
        return await future

    async def _next_group(self) -> list[_Job]:
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        group, size = [first], len(first.pairs)
        if not self.enabled:
            return group
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_ms / 1000
        while size < self.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                job = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            if size + len(job.pairs) > self.max_batch_size:
                self._held = job  # first of the next group
                break
            group.append(job)
            size += len(job.pairs)
        return group

    async def _run(self) -> None:
        while True:
            # Requests whose client went away (cancelled futures) are not scored.
            group = [job for job in await self._next_group() if not job.future.done()]
            if not group:
                continue
            pairs = [pair for job in group for pair in job.pairs]
            try:
                scores = await asyncio.to_thread(self.score, pairs)
            except Exception as err:
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            self.stats.record(len(group), len(pairs))
            start = 0
            for job in group:
                end = start + len(job.pairs)
                if not job.future.done():
                    job.future.set_result([float(s) for s in scores[start:end]])
                start = end
