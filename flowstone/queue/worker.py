"""The Worker API: a class per kind of job, registered by name in an explicit registry."""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import pydantic

from flowstone.errors import ValidationError, ValidationTypeError
from flowstone.queue import backoff as backoff_
from flowstone.queue.job import Job, running_job
from flowstone.queue.results import Result
from flowstone.queue.unique import Unique
from flowstone.queue.validation import (
    check_args,
    check_max_attempts,
    check_name,
    check_priority,
    check_text,
)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job ready to insert (Oban's changeset). Build it with `Worker.new`."""

    worker: str
    queue: str
    args: dict[str, Any]
    max_attempts: int
    priority: int
    meta: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    scheduled_at: datetime | None = None
    scheduled_in: float | None = None
    unique: Unique | None = None

    @property
    def unique_key(self) -> str | None:
        """The key the unique index compares, or None for a job that is not unique."""
        if self.unique is None:
            return None
        return self.unique.key(self.worker, self.queue, self.args, self.meta)


_SETTERS = tuple(getattr(NewJob, f.name).__set__ for f in fields(NewJob))


def _new_job(
    worker: str,
    queue: str,
    args: dict[str, Any],
    max_attempts: int,
    priority: int,
    meta: dict[str, Any],
    tags: tuple[str, ...],
    scheduled_at: datetime | None,
    scheduled_in: float | None,
    unique: Unique | None,
) -> NewJob:
    """A NewJob built without its frozen `__init__`, which sets each field through
    `object.__setattr__`: these slot setters take a third of its time, and `Worker.new`
    (a bulk insert's per-job cost) builds one per job."""
    job: NewJob = object.__new__(NewJob)
    set_worker, set_queue, set_args, set_max, set_priority, set_meta, set_tags, set_at, set_in, set_unique = (
        _SETTERS
    )
    set_worker(job, worker)
    set_queue(job, queue)
    set_args(job, args)
    set_max(job, max_attempts)
    set_priority(job, priority)
    set_meta(job, meta)
    set_tags(job, tags)
    set_at(job, scheduled_at)
    set_in(job, scheduled_in)
    set_unique(job, unique)
    return job


class Worker:
    """Subclass to define a kind of job; override `perform` (sync or async).

    Class attributes set the defaults of every job of this worker: `queue`,
    `max_attempts`, `priority`, `tags`, `unique`, an optional pydantic `args_model`
    validated at insert and at execution, and `cron` (an expression, run by the leader).
    With `record_result = True`, what `perform` returns is stored with the job (JSON of
    at most `result_limit` bytes) for `FlowStone.await_job` and the job's detail.
    A subclass registers itself in `default_registry` under `name`
    (`module.QualName` unless set; see `default_name` for a script run as `__main__`).
    `cron_timezone` is the time zone of `cron` (UTC unless set).
    `executor = "process"` runs a sync `perform` in a child process that is killed at
    `timeout` or on cancel ("thread": in a thread of the node; None: as its queue says).
    """

    name: ClassVar[str] = ""
    queue: ClassVar[str] = "default"
    max_attempts: ClassVar[int] = 20
    priority: ClassVar[int] = 0
    tags: ClassVar[Sequence[str]] = ()
    unique: ClassVar[Unique | None] = None
    args_model: ClassVar[type[pydantic.BaseModel] | None] = None
    cron: ClassVar[str | None] = None
    cron_timezone: ClassVar[str] = "UTC"
    record_result: ClassVar[bool] = False
    result_limit: ClassVar[int] = 64 * 1024
    register: ClassVar[bool] = True
    executor: ClassVar[Literal["thread", "process"] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or not cls.name:
            cls.name = default_name(cls)
        check_name(cls.name, f"{cls.__qualname__}.name")
        check_name(cls.queue, f"{cls.__qualname__}.queue")
        check_priority(cls.priority)
        check_max_attempts(cls.max_attempts)
        limit = cls.result_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(
                f"{cls.__qualname__}.result_limit must be a positive number of bytes; got {limit!r}"
            )
        if cls.unique is not None and not isinstance(cls.unique, Unique):
            raise ValidationTypeError(f"{cls.__qualname__}.unique must be a Unique; got {cls.unique!r}")
        _check_executor(cls)
        if cls.__dict__.get("register", True):
            default_registry.register(cls)

    @classmethod
    def is_async(cls) -> bool:
        """Whether `perform` is a coroutine function (it runs on the node's event loop)."""
        return inspect.iscoroutinefunction(cls.perform)

    def perform(self, job: Job) -> Result | Awaitable[Result]:
        """Do the work. Return None to complete, or Snooze/Discard/Cancel; raise to fail."""
        raise NotImplementedError(f"{type(self).__qualname__} must define perform(self, job)")

    def backoff(self, job: Job) -> float:
        """Seconds before the next attempt after a failure; Oban's default."""
        return backoff_.exponential(job.attempt)

    def timeout(self, job: Job) -> float | None:
        """Seconds `perform` may run before it counts as failed; None for no limit."""
        return None

    @classmethod
    def parse_args(cls, args: Mapping[str, Any]) -> Any:
        """Validate args with `args_model` (returning the model) or return them as a dict."""
        if cls.args_model is None:
            return dict(args)
        return cls.args_model.model_validate(dict(args))

    @classmethod
    def new(
        cls,
        args: Mapping[str, Any] | pydantic.BaseModel | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        tags: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
        scheduled_in: float | None = None,
        scheduled_at: datetime | None = None,
        unique: Unique | None = None,
    ) -> NewJob:
        """Validate and build a job of this worker; nothing is written until it is inserted."""
        if isinstance(args, pydantic.BaseModel):
            args = args.model_dump(mode="json")
        checked = check_args({} if args is None else args)
        if cls.args_model is not None:
            checked = cls.args_model.model_validate(checked).model_dump(mode="json")
        meta_dict = {} if meta is None else check_args(meta, "meta")
        return _new_job(
            cls.name,
            check_name(queue if queue is not None else cls.queue, "queue"),
            checked,
            check_max_attempts(max_attempts if max_attempts is not None else cls.max_attempts),
            check_priority(priority if priority is not None else cls.priority),
            meta_dict,
            _check_tags(cls.tags if tags is None else tags),
            _check_scheduled_at(scheduled_at, scheduled_in),
            _check_scheduled_in(scheduled_in),
            unique if unique is not None else cls.unique,
        )

    @classmethod
    def enqueue(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Build and insert a job: inside a running job through the instance running it,
        elsewhere through the default instance (`flowstone.configure`)."""
        conn = options.pop("conn", None)
        return _instance().insert(cls.new(args, **options), conn=conn)

    @classmethod
    async def aenqueue(cls, args: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Async twin of `enqueue`."""
        conn = options.pop("conn", None)
        return await _instance().ainsert(cls.new(args, **options), conn=conn)


def _check_executor(cls: type[Worker]) -> None:
    if cls.executor not in (None, "thread", "process"):
        raise ValidationError(
            f"{cls.__qualname__}.executor must be 'thread' or 'process'; got {cls.executor!r}"
        )
    if cls.executor == "process" and cls.is_async():
        raise ValidationError(
            f"{cls.__qualname__}.perform is async, and executor='process' runs a sync perform only "
            "(an async perform is already cancelled at its timeout): make perform a plain def, "
            "or remove executor"
        )


UNNAMED_MAIN = "__main__."
"""The prefix of a worker's default name when its module has no importable name (an
interactive session, `python -c`, a notebook): such jobs are refused at insert."""


def default_name(cls: type) -> str:
    """`module.QualName`, the module named as an importer would name it: a class of a
    script run as `python mailer.py` is `mailer.SendEmail` (`pkg.mailer.SendEmail` inside
    a package), as in the worker that imports `mailer`; `python -m pkg.mailer` gives
    `pkg.mailer.SendEmail`."""
    return f"{_importable_module(cls.__module__) or '__main__'}.{cls.__qualname__}"


def _importable_module(module: str) -> str | None:
    """The name `module` has when imported, or None when it has none."""
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if not path:
        return None
    parts = [Path(path).resolve().stem]
    folder = Path(path).resolve().parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


class Inserter(Protocol):
    """What `enqueue` inserts through: an instance (`FlowStone`)."""

    def insert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Insert one job."""
        ...

    async def ainsert(self, job: NewJob, *, conn: Any = None) -> Job:
        """Async twin of `insert`."""
        ...


_defaults: list[Callable[[], Inserter]] = []
"""Where `enqueue` outside a job finds its instance: the facade's module, which builds on
this one, gives its `get_default` through `use_default`."""


def use_default(get_default: Callable[[], Inserter]) -> None:
    """Make `get_default` what `enqueue` calls outside a running job."""
    _defaults[:] = [get_default]


def _instance() -> Inserter:
    """The running job's instance, else the default one."""
    running = running_job()
    if running is not None and running._fs is not None:
        found: Inserter = running._fs
        return found
    return _defaults[0]()


def _check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    if tags == ():
        return ()
    if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
        raise ValidationError(f"tags must be a list of strings; got {tags!r}")
    return tuple(check_text(tag, f"tags[{index}]") for index, tag in enumerate(tags))


def _check_scheduled_in(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValidationError(f"scheduled_in must be a number of seconds >= 0; got {seconds!r}")
    return float(seconds)


def _check_scheduled_at(at: datetime | None, seconds: float | None) -> datetime | None:
    if at is None:
        return None
    if seconds is not None:
        raise ValidationError("give scheduled_at or scheduled_in, not both")
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValidationError(f"scheduled_at must be a timezone-aware datetime; got {at!r}")
    return at


class WorkerRegistry:
    """Worker classes by name. Jobs are resolved here only, never by importing a path."""

    def __init__(self) -> None:
        self._workers: dict[str, type[Worker]] = {}
        self._lock = threading.Lock()

    def register(self, worker: type[Worker]) -> type[Worker]:
        """Add (or redefine) a worker under its name; usable as a class decorator."""
        with self._lock:
            self._workers[worker.name] = worker
        return worker

    def get(self, name: str) -> type[Worker] | None:
        """The worker registered under `name`, if any."""
        return self._workers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._workers

    def names(self) -> list[str]:
        """Registered worker names, sorted."""
        return sorted(self._workers)


default_registry = WorkerRegistry()
"""Every `Worker` subclass, registered under its name as it is defined: the workers an
instance runs unless given `registry=`."""
