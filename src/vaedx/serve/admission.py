"""Admission control: at most ``workers`` requests in inference, a bounded queue behind them, 503 beyond.

Why worker threads in one process, not worker processes: the model, its calibration and the volume cache
exist once in memory and are shared by the N threads; torch releases the GIL inside its kernels
(convolutions, matrix products, autograd), and Pillow, numpy and scipy release it for most of the decoding,
resizing and PNG encoding, so N threads really run N requests at once. N processes would hold N copies of
the model and could not share the volume cache, whose ids a later request must find again. Each worker then
gets ``--threads / N`` torch threads, so N workers together use the cores one request used before.

Why a gate of our own: FastAPI runs a plain ``def`` endpoint in anyio's thread pool (40 threads by
default), so without it up to 40 requests would run inference at once, each with its upload and its
activations in memory, and every further request would wait in the event loop with no bound. The gate
counts a request when it arrives, before its body is read: past ``workers + queue`` requests it is answered
``503`` with ``Retry-After`` at once; an admitted request waits (its upload already on disk) for one of the
``workers`` inference slots. What is shared by the requests in inference is read-only (the model in eval
mode, the calibration) or locked (the volume cache), so nothing else is serialised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

RETRY_AFTER_S = 1


class Gate:
    """``workers`` inference slots and room for ``queue`` more admitted requests; thread-safe."""

    def __init__(self, workers: int = 1, queue: int | None = None, retry_after_s: int = RETRY_AFTER_S):
        queue = 2 * workers if queue is None else queue
        if workers < 1 or queue < 0 or retry_after_s < 1:
            raise ValueError("the gate needs a worker or more, a queue of 0 or more and a retry delay >= 1 s")
        self.workers, self.queue, self.retry_after_s = workers, queue, retry_after_s
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._admitted = 0
        self._busy = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.queue

    @property
    def admitted(self) -> int:
        """Requests admitted and not yet answered: those in inference plus those waiting for a slot."""
        return self._admitted

    @property
    def busy(self) -> int:
        """Requests holding an inference slot now."""
        return self._busy

    def try_enter(self) -> bool:
        """Admit one more request, or False at once when ``workers + queue`` are already admitted."""
        with self._lock:
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``workers`` inference slots (waiting for one if all are taken)."""
        with self._slots:
            with self._lock:
                self._busy += 1
            try:
                yield
            finally:
                with self._lock:
                    self._busy -= 1

    def busy_message(self) -> str:
        return (
            f"server busy: {self.workers} request(s) in inference and {self.queue} waiting; "
            f"retry after {self.retry_after_s} s"
        )


class Admission:
    """ASGI middleware: requests to ``paths`` pass the :class:`Gate` or get ``503`` + ``Retry-After``."""

    def __init__(self, app: Any, gate: Gate, paths: tuple[str, ...]):
        self.app, self.gate, self.paths = app, gate, frozenset(paths)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self.gate.try_enter():
            body = json.dumps({"detail": self.gate.busy_message()}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"retry-after", str(self.gate.retry_after_s).encode())]  # fmt: skip
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.leave()
