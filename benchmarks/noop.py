"""The benchmark's app: a no-op async job that only counts itself (as the peers' tasks do),
and a job that counts itself then waits 5 ms, as if for I/O (the `realistic` workload)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterable
from typing import Any

import anyio

from flowstone import FlowStone, Job, Worker

STATS: dict[str, Any] = {"count": 0, "first": None, "last": None, "lat": []}
QUEUE = "default"
SLEEP_S = 0.005


class Runs:
    """A set of job ids, one bit each, and the ids added more than once. The ids of the
    jobs run, when the worker is told to keep them (`--record-ids`): scale-out and the soak
    check that every inserted job ran exactly once — the soak runs millions, which a list
    would keep in the very RSS it measures (about 1 MB per 8 million ids here)."""

    def __init__(self, bits: bytes = b"", twice: Iterable[int] = ()) -> None:
        self.bits = bytearray(bits)
        self.twice = list(twice)

    def add(self, job_id: int) -> None:
        byte, mask = job_id >> 3, 1 << (job_id & 7)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))  # doubling
        if self.bits[byte] & mask:
            self.twice.append(job_id)
        self.bits[byte] |= mask

    def number(self) -> int:
        """The set as one integer (bit i: id i)."""
        return int.from_bytes(self.bits, "little")

    def __len__(self) -> int:
        return self.number().bit_count()

    @classmethod
    def union(cls, parts: Iterable[Runs]) -> Runs:
        """Every part's ids; an id in two parts, or twice in one, is in `twice`."""
        seen, twice = 0, []
        for part in parts:
            number = part.number()
            twice += [*part.twice, *_members(seen & number)]
            seen |= number
        return cls(_bytes(seen), twice)

    def to_json(self) -> dict[str, Any]:
        return {"bits": base64.b64encode(self.bits.rstrip(b"\0")).decode(), "twice": self.twice}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Runs:
        return cls(base64.b64decode(data["bits"]), data["twice"])


def _bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "little")


def _members(number: int) -> list[int]:
    """The ids of a set given as one integer (read byte by byte: most bytes are zero)."""
    found = enumerate(_bytes(number))
    return [8 * at + bit for at, byte in found if byte for bit in range(8) if byte >> bit & 1]


RUNS: Runs | None = None  # the ids this worker ran, with --record-ids


def record(job: Job) -> None:
    """Count one execution; with `t` in args, note the insert-to-start latency."""
    now = time.time()
    STATS["count"] += 1
    if STATS["first"] is None:
        STATS["first"] = now
    STATS["last"] = now
    if RUNS is not None:
        RUNS.add(job.id)
    sent = job.args.get("t")
    if sent is not None:
        STATS["lat"].append(now - float(sent))


class Noop(Worker):
    """The no-op job."""

    name = "bench.Noop"
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        record(job)


class Sleep(Worker):
    """Counts itself when it starts, then 5 ms of (simulated) I/O."""

    name = "bench.Sleep"
    queue = QUEUE

    async def perform(self, job: Job) -> None:
        record(job)
        await anyio.sleep(SLEEP_S)


def app(url: str, **settings: Any) -> FlowStone:
    """A FlowStone on the benchmark database with the runtime defaults."""
    return FlowStone(url, node=f"bench.{os.getpid()}", **settings)
