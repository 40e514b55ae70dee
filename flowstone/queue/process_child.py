"""The child side of the process executor: `main([FD, PPID])` in a fresh interpreter.

A child runs one sync `perform` at a time for its node (`process_pool.py`), talking over
the socket FD in frames of JSON (a 4-byte length, then UTF-8 JSON; never pickle). The
first frame sets it up (sys.path, the settings of the `FlowStone` that `job.fs` builds);
each later one is a job: the child imports the worker class by module and name, answers
`started`, forwards `job.progress` reports, and answers `done` with what `perform`
returned or raised. It dies with its node (Linux: the parent-death signal; elsewhere a
watchdog thread), so a job it runs can never outlive the node that claimed it.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstone.queue.job import STATES, Job, _running
from flowstone.queue.results import Cancel, Discard, Snooze

if TYPE_CHECKING:
    from flowstone.queue.instance import FlowStone
    from flowstone.queue.worker import Worker

_HEADER = struct.Struct(">I")
_DATES = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at", "cancelled_at")
_FIELDS = (
    "id",
    "state",
    "queue",
    "worker",
    "args",
    "meta",
    "tags",
    "errors",
    "attempt",
    "max_attempts",
    "priority",
    "attempted_by",
    "unique_key",
    *_DATES,
)


def frame(message: dict[str, Any]) -> bytes:
    """One message as sent: its length, then its JSON (ASCII: a lone surrogate a job put in
    a text crosses escaped, to be made storable by the node like any other text)."""
    body = json.dumps(message, allow_nan=False).encode("ascii")
    return _HEADER.pack(len(body)) + body


def length_of(header: bytes) -> int:
    """The body length a frame's 4-byte header announces."""
    (length,) = _HEADER.unpack(header)
    return int(length)


def job_to_json(job: Job) -> dict[str, Any]:
    """The columns of `job` a child needs, as JSON."""
    values = {name: getattr(job, name) for name in _FIELDS}
    values["state"] = job.state.value
    for name in _DATES:
        values[name] = None if values[name] is None else values[name].isoformat()
    return values


def job_from_json(values: dict[str, Any]) -> Job:
    """The `Job` that `job_to_json` describes."""
    values = dict(values)
    values["state"] = STATES[values["state"]]
    for name in _DATES:
        values[name] = None if values[name] is None else datetime.fromisoformat(values[name])
    return Job(**values)


class Channel:
    """The child's end of the socket: blocking frames, sends safe from any thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = frame(message)
        with self.lock:
            self.sock.sendall(data)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the node closed its end."""
        header = self._exactly(_HEADER.size)
        if header is None:
            return None
        body = self._exactly(length_of(header))
        return None if body is None else dict(json.loads(body))

    def _exactly(self, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)


def answer(result: object, worker: type[Worker]) -> dict[str, Any]:
    """What `perform` returned, as the parent rebuilds it (a recorded value checked here,
    where it was made: the parent gets JSON only)."""
    from flowstone.queue.outcomes import clean_text, recordable, safe_str

    if result is None:
        return {"kind": "none"}
    if isinstance(result, Snooze):
        return {"kind": "snooze", "seconds": float(result.seconds)}
    if isinstance(result, Discard | Cancel):
        return {"kind": type(result).__name__.lower(), "reason": safe_str(result.reason)}
    if worker.record_result:
        return {"kind": "value", "value": recordable(result, worker.result_limit)}
    return {"kind": "ignored", "text": clean_text(safe_str(result), 200)}


def raised(error: BaseException) -> dict[str, Any]:
    """What `perform` raised: its type's name, message and traceback, as text."""
    from flowstone.queue.outcomes import safe_str, trace_of

    return {
        "kind": "error",
        "type": type(error).__name__,
        "message": safe_str(error),
        "traceback": trace_of(error),
    }


class Child:
    """Runs the jobs the node sends until the node closes the socket."""

    def __init__(self, channel: Channel, settings: dict[str, Any]) -> None:
        self.channel = channel
        self.settings = settings
        self._fs: FlowStone | None = None
        self._workers: dict[tuple[str, str], type[Worker]] = {}

    def serve(self) -> None:
        while (request := self.channel.receive()) is not None:
            self.channel.send({"event": "done", "reply": self._run(request)})
            del request
        if self._fs is not None:
            self._fs.close()

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            worker = self._worker(request["module"], request["qualname"])
            job = job_from_json(request["job"])
            job._fs = self._instance()
            job._on_progress = self._progress
        except BaseException as error:
            return raised(error)
        self.channel.send({"event": "started"})
        token = _running.set(job)
        try:
            return answer(worker().perform(job), worker)
        except BaseException as error:  # the job's, whatever it raised
            return raised(error)
        finally:
            _running.reset(token)

    def _progress(self, job: Job) -> None:
        self.channel.send({"event": "progress", "report": job.progress_report})

    def _worker(self, module: str, qualname: str) -> type[Worker]:
        """The worker class, imported by name (once per child)."""
        from flowstone.queue.worker import Worker

        key = (module, qualname)
        if key not in self._workers:
            found: Any = importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
            if not (isinstance(found, type) and issubclass(found, Worker)):
                raise TypeError(f"{module}.{qualname} is not a Worker subclass in the job's process")
            self._workers[key] = found
        return self._workers[key]

    def _instance(self) -> FlowStone:
        """`job.fs` in a child: a FlowStone on the node's database and schema, built on first
        use (it connects when a job first uses it, with a pool of its own)."""
        if self._fs is None:
            from flowstone.queue.instance import FlowStone

            self._fs = FlowStone(**self.settings)
        return self._fs


def die_with(parent: int) -> None:
    """End this process when the node's process `parent` ends (a SIGKILLed node too)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the node was gone before the signal was armed
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)  # a watchdog's period, well under any node_expiry
        os._exit(1)

    threading.Thread(target=watch, name="flowstone parent watchdog", daemon=True).start()


def main(argv: list[str]) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node decides when its children stop
    channel = Channel(socket.socket(fileno=fd))
    setup = channel.receive()
    if setup is None:
        return 0
    sys.path[:0] = [path for path in setup["sys_path"] if path not in sys.path]
    Child(channel, setup["settings"]).serve()
    return 0
