"""The `filesystem` IO manager: a directory per asset, a file per partition, written atomically.

A partition's file is named by its key, percent-quoted; a quoted key too long for a file
name (most file systems allow 255 bytes) is cut and completed by its SHA-256, behind a
`%-` that quoting never produces, so every key keeps a file of its own. A store writes
a temporary `.tmp-<host>-<pid>-…` beside the file and renames it over the file: a store
that fails removes its temporary, and the temporaries of stores that were killed are
removed when a process first uses the root (those of this host whose process is gone,
and any not written to for `STALE_TEMPORARY` seconds).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from flowstone.assets.io.base import IOManager, io_error, to_json
from flowstone.errors import ValidationError

if TYPE_CHECKING:
    from flowstone.assets.context import Context

UNPARTITIONED = "__unpartitioned__"
"""The file name stem used for an unpartitioned asset's value."""


DEFAULT_ROOT = "flowstone_assets"

NAME_MAX = 255
"""Bytes a file name may have (ext4, XFS, APFS, NTFS…)."""
HASHED_PREFIX = 160
"""Characters of a too long quoted key kept before its hash (readable in a listing)."""
TEMPORARY = ".tmp-"
STALE_TEMPORARY = 3600.0
"""Seconds after which a temporary nobody writes to is abandoned, whoever wrote it."""


def default_root() -> Path:
    """FLOWSTONE_ASSETS_DIR, else `./flowstone_assets`: where the file managers store
    unless given a root (read each time, not when FlowStone is imported)."""
    return Path(os.environ.get("FLOWSTONE_ASSETS_DIR", DEFAULT_ROOT))


class FilesystemIOManager(IOManager):
    """`root/<asset>/<partition>.json` (or `.pkl` with `format="pickle"`), written atomically.

    Without a `root`, the directory is FLOWSTONE_ASSETS_DIR or `./flowstone_assets`, read
    when a path is first needed (not when FlowStone is imported)."""

    def __init__(self, root: str | Path | None = None, *, format: Literal["json", "pickle"] = "json") -> None:
        if format not in ("json", "pickle"):
            raise ValidationError(f"format must be 'json' or 'pickle'; got {format!r}")
        self._root = None if root is None else Path(root)
        self.format = format
        self._swept: set[Path] = set()

    @property
    def root(self) -> Path:
        """The directory holding every asset's files."""
        return default_root() if self._root is None else self._root

    def path(self, ctx: Context) -> Path:
        """The file holding the value of `ctx`'s asset and partition."""
        suffix = f".{'json' if self.format == 'json' else 'pkl'}"
        key = ctx.partition_key
        stem = UNPARTITIONED if key is None else _stem(key, NAME_MAX - len(suffix))
        return self.root / ctx.asset / f"{stem}{suffix}"

    def _encode(self, ctx: Context, value: Any) -> bytes:
        if self.format == "json":
            return to_json(ctx, value).encode()
        try:
            return pickle.dumps(value)
        except Exception as error:
            raise io_error(ctx, f"value cannot be pickled: {error}", retryable=False) from error

    def load(self, ctx: Context) -> Any:
        try:
            data = self.path(ctx).read_bytes()
        except OSError as error:
            raise io_error(ctx, f"cannot read {self.path(ctx)}: {error}", retryable=False) from error
        if self.format == "json":
            return json.loads(data)
        return pickle.loads(data)

    def store(self, ctx: Context, value: Any) -> Mapping[str, Any]:
        data = self._encode(ctx, value)
        target = self.path(ctx)
        self._sweep()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_over(target, data)
        except OSError as error:
            lasting = error.errno == errno.ENAMETOOLONG  # no retry makes a name shorter
            raise io_error(ctx, f"cannot write {target}: {error}", retryable=not lasting) from error
        return {"path": str(target), "bytes": len(data)}

    def _sweep(self) -> None:
        """Once per root and process: remove the temporaries of stores that were killed."""
        root = self.root
        if root in self._swept:
            return
        self._swept.add(root)
        for temporary in root.glob(f"*/{TEMPORARY}*"):
            if _abandoned(temporary):
                with contextlib.suppress(OSError):
                    temporary.unlink()

    def exists(self, ctx: Context) -> bool:
        return self.path(ctx).is_file()

    def delete(self, ctx: Context) -> None:
        self.path(ctx).unlink(missing_ok=True)


def _stem(key: str, room: int) -> str:
    """`key` percent-quoted, or when that exceeds `room` bytes, its start and its hash."""
    quoted = quote(key, safe="")  # ASCII: one byte a character
    if len(quoted) <= room:
        return quoted
    return f"{quoted[:HASHED_PREFIX]}%-{hashlib.sha256(key.encode()).hexdigest()}"


def _write_over(target: Path, data: bytes) -> None:
    """Write `data` to a temporary beside `target`, then rename it over `target` (the
    temporary is removed when that fails)."""
    tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=_temporary_prefix(), delete=False)  # noqa: SIM115
    try:
        with tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise


def _host_prefix() -> str:
    """How the temporaries written on this host begin."""
    return f"{TEMPORARY}{quote(socket.gethostname(), safe='')[:64]}-"


def _temporary_prefix() -> str:
    """Names who writes a temporary: this host and process."""
    return f"{_host_prefix()}{os.getpid()}-"


def _abandoned(temporary: Path) -> bool:
    """Whether nobody writes `temporary` any more: it has not been written to for
    `STALE_TEMPORARY` seconds, or its process, on this host, is gone."""
    try:
        if time.time() - temporary.stat().st_mtime > STALE_TEMPORARY:
            return True
    except OSError:
        return False  # gone already
    if not temporary.name.startswith(_host_prefix()):
        return False  # another host's: only its age tells
    pid, sep, _ = temporary.name.removeprefix(_host_prefix()).partition("-")
    return bool(sep) and pid.isdigit() and not _alive(int(pid))


def _alive(pid: int) -> bool:
    """Whether process `pid` of this host runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True
