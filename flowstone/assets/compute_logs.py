"""Compute logs: what one materialization printed and logged, kept with its record.

While an asset function, its IO manager and its checks run, whatever they write to
`sys.stdout`, `sys.stderr` or `logging` (`ctx.log` included) goes to the materialization's
`ComputeLog` as well as where it went before. Routing is by a context variable, so
materializations running at once in one process — in threads or in asyncio tasks — each
keep their own lines. The stream proxies and the logging handler are installed while
some capture is open and removed when the last one closes; outside a capture (and in
threads that do not carry its context) they pass everything straight through.

A log is bounded: it keeps the last `LOG_LIMIT` characters and says how much was cut.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

LOG_LIMIT = 64 * 1024
"""How many characters of a materialization's output are kept (its last ones)."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""How a captured `logging` record is written into the log."""

_current: ContextVar[ComputeLog | None] = ContextVar("flowstone_compute_log", default=None)


class ComputeLog:
    """The bounded output of one materialization: the last `limit` characters written."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.limit = limit
        self.cut = 0
        self._chunks: deque[str] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        """Append `text`, dropping the oldest characters beyond the limit."""
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size > self.limit:
                excess = self._size - self.limit
                first = self._chunks[0]
                if len(first) <= excess:
                    self._chunks.popleft()
                    dropped = len(first)
                else:
                    self._chunks[0] = first[excess:]
                    dropped = excess
                self._size -= dropped
                self.cut += dropped

    def text(self) -> str | None:
        """What was kept, headed by a note when the start was cut; None when nothing was written."""
        with self._lock:
            if not self._size and not self.cut:
                return None
            kept = "".join(self._chunks)
        if not self.cut:
            return kept
        return f"[… {self.cut} earlier characters cut: the last {self.limit} are kept …]\n{kept}"


class _RoutedStream:
    """Stands in for `sys.stdout` or `sys.stderr`: writes also go to the current
    materialization's log, if any; everything else is the wrapped stream's."""

    def __init__(self, wrapped: IO[str]) -> None:
        self.wrapped = wrapped
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        log = _current.get()
        if log is not None:
            log.write(text)
        with self._lock:  # threads and the event loop write at once: one at a time
            return self.wrapped.write(text)

    def flush(self) -> None:
        with self._lock:
            self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class _RoutedHandler(logging.Handler):
    """A root logging handler writing each record into the current materialization's log."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        log = _current.get()
        if log is not None:
            try:
                log.write(self.format(record) + "\n")
            except Exception:  # a record that cannot be formatted: logging's own report
                self.handleError(record)


class _Routing:
    """Installs the proxies and the handler while at least one capture is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._handler = _RoutedHandler()
        self._streams: dict[str, _RoutedStream] = {}
        self._retired: list[_RoutedStream] = []  # replaced under us: kept alive, as above

    def enter(self) -> None:
        with self._lock:
            self._open += 1
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if not isinstance(stream, _RoutedStream):  # first capture, or replaced meanwhile
                    proxy = self._streams.get(name)
                    if proxy is None or proxy.wrapped is not stream:
                        if proxy is not None:
                            self._retired.append(proxy)
                        proxy = self._streams[name] = _RoutedStream(stream)
                    setattr(sys, name, proxy)
            if self._open == 1:
                logging.getLogger().addHandler(self._handler)

    def leave(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open:
                return
            logging.getLogger().removeHandler(self._handler)
            for name, proxy in self._streams.items():
                if getattr(sys, name) is proxy:  # restore only what is still ours
                    setattr(sys, name, proxy.wrapped)
            # The proxies stay referenced: print() in another thread may hold sys.stdout as
            # a borrowed reference while it writes, and freeing it then crashes the process.


_routing = _Routing()


@contextmanager
def capturing(log: ComputeLog) -> Iterator[ComputeLog]:
    """Within the block (in this context: this thread or task), output goes to `log` too."""
    _routing.enter()
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)
        _routing.leave()


def asset_logger(asset: str) -> logging.Logger:
    """The logger of `ctx.log`: `flowstone.asset.<name>`, recording from INFO up unless
    configured otherwise."""
    logger = logging.getLogger(f"flowstone.asset.{asset}")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return logger
