"""Streamed bodies (exports, export files) served the way the server consumes them, with flat memory.

Django's ``StreamingHttpResponse`` takes a sync iterator under WSGI; under ASGI it reads a sync iterator
whole first (``sync_to_async(list)``): a 318k-event CSV took 58 s to its first byte and grew Daphne
by 350 MB. So under ASGI the response gets an async iterator (``AsyncChunks``) that reads the same
sync chunks in batches of ~64 KiB, each batch in the request's own thread (``thread_sensitive``: the
thread whose database connection holds the server-side cursor), so the event loop never waits on the
database and one batch at a time is in memory. The bytes are exactly those of the sync iterator.

Nothing is raised once the response has started: an error half-way is logged and ends the body
(Daphne cannot report an exception after the headers went out; it left the connection open). When the
client goes away, the sync iterator is closed in that same thread (its cursor with it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest

logger = logging.getLogger(__name__)

#: Bytes gathered per hop to the request's thread: one hop per row would cost more than the row.
BATCH_BYTES = 64 * 1024


class AsyncChunks:
    """A sync iterator of bytes, served as an async one: batches read in the request's thread."""

    def __init__(self, chunks: Iterable[bytes], *, batch_bytes: int = BATCH_BYTES):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._batch_bytes = batch_bytes
        self._error: BaseException | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        take = sync_to_async(self._take, thread_sensitive=True)
        try:
            while True:
                try:
                    data = await take()
                except Exception:  # noqa: BLE001 - the headers are out: end the body, never hang the client
                    logger.exception("A streamed response failed half-way; its body ends here, truncated.")
                    return
                if data is None:
                    return
                yield data
        finally:
            await sync_to_async(self.close, thread_sensitive=True)()

    def _take(self) -> bytes | None:
        """The next batch (None at the end). An error after some bytes of a batch keeps them: it is
        raised on the next call."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        parts, size = [], 0
        try:
            for part in self._chunks:
                if part:
                    parts.append(part)
                    size += len(part)
                if size >= self._batch_bytes:
                    break
        except Exception as exc:
            if not parts:
                raise
            self._error = exc
        return b"".join(parts) if parts else None

    def close(self) -> None:
        """Close the sync iterator (a generator's ``finally`` runs, a cursor closes); again is harmless."""
        close = getattr(self._chunks, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:  # noqa: BLE001 - closing must not raise into the server
            logger.exception("Closing a streamed response's source failed.")


def served_by_asgi(request) -> bool:
    """``request`` (Django's or DRF's) came through an ASGI server (not WSGI, not the sync test client)."""
    return isinstance(getattr(request, "_request", request), ASGIRequest)


def body_for(request, chunks: Iterable[bytes]) -> Iterable[bytes] | AsyncChunks:
    """What a ``StreamingHttpResponse`` for ``request`` should consume: under ASGI an async iterator,
    under WSGI the sync chunks themselves."""
    return AsyncChunks(chunks) if served_by_asgi(request) else chunks


def file_chunks(handle, size: int = BATCH_BYTES) -> Iterator[bytes]:
    """A file's bytes, ``size`` at a time."""
    return iter(lambda: handle.read(size), b"")
