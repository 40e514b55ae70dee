"""The `filesystem` IO manager: a directory per asset, a file per partition, written atomically."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
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

    @property
    def root(self) -> Path:
        """The directory holding every asset's files."""
        return default_root() if self._root is None else self._root

    def path(self, ctx: Context) -> Path:
        """The file holding the value of `ctx`'s asset and partition."""
        stem = UNPARTITIONED if ctx.partition_key is None else quote(ctx.partition_key, safe="")
        return self.root / ctx.asset / f"{stem}.{'json' if self.format == 'json' else 'pkl'}"

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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)
        except OSError as error:
            raise io_error(ctx, f"cannot write {target}: {error}") from error
        return {"path": str(target), "bytes": len(data)}

    def exists(self, ctx: Context) -> bool:
        return self.path(ctx).is_file()

    def delete(self, ctx: Context) -> None:
        self.path(ctx).unlink(missing_ok=True)
