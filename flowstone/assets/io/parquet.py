"""The `parquet` IO manager: pandas and polars DataFrames and pyarrow Tables as Parquet
files, one per (asset, partition), under a directory or an fsspec URL (`s3://…`, `gs://…`).

Never a torn file: on a local disk the file is written under a temporary name beside its
place, flushed to disk and renamed over it; an object store receives it in one upload (a PUT,
or a multipart upload for a large file: either way the object appears whole or not at
all). A writer killed mid-write leaves only its temporary
(`.<partition>.parquet.tmp-…`), which nothing reads and the next store of that partition
removes (stores of one partition take turns: materializations hold its lock).

A value is read back as the type that was stored — recorded in the file's metadata — or
as the dependent asks: `Dep("orders", as_type=polars.DataFrame)`. A dependent reading
several partitions (a roll-up, a window) gets them concatenated into one frame. pyarrow
(and fsspec for URLs) come with `pip install 'flowstone[parquet]'`, imported on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flowstone.assets.io.base import IOManager, io_error
from flowstone.assets.io.filesystem import UNPARTITIONED, default_root
from flowstone.errors import FlowStoneError

if TYPE_CHECKING:
    import pyarrow

    from flowstone.assets.context import Context

TYPE_KEY = b"flowstone.type"
"""The key of a file's (schema) metadata naming the type its frame was stored as."""

FRAMES = {
    "pandas": ("pandas", "DataFrame"),
    "polars": ("polars", "DataFrame"),
    "pyarrow": ("pyarrow", "Table"),
}
"""The kinds of frame stored and loaded: kind → (module, class)."""

EXTRA = "the parquet IO manager needs pyarrow: pip install 'flowstone[parquet]'"


def _name(kind: str) -> str:
    module, cls = FRAMES[kind]
    return f"{module}.{cls}"


def _kind_of_type(cls: type) -> str | None:
    """The kind a class stands for (`polars.DataFrame` → "polars"), else None."""
    root = cls.__module__.partition(".")[0]
    return next(
        (kind for kind, (module, name) in FRAMES.items() if (module, name) == (root, cls.__name__)), None
    )


def _kind_of_value(value: object) -> str | None:
    return next((kind for kind in FRAMES if any(_kind_of_type(c) == kind for c in type(value).__mro__)), None)


def _to_arrow(ctx: Context, value: Any) -> tuple[pyarrow.Table, str]:
    """`value` as an Arrow table carrying its kind in the schema metadata."""
    import pyarrow as pa

    kind = _kind_of_value(value)
    if kind is None:
        raise io_error(
            ctx,
            f"the parquet IO manager stores {', '.join(map(_name, FRAMES))}; got {type(value).__name__}",
            retryable=False,
        )
    table = (
        value if kind == "pyarrow" else value.to_arrow() if kind == "polars" else pa.Table.from_pandas(value)
    )
    return table.replace_schema_metadata({**(table.schema.metadata or {}), TYPE_KEY: kind.encode()}), kind


def _from_arrow(table: pyarrow.Table, kind: str) -> Any:
    """`table` as a frame of `kind`."""
    if kind == "pandas":
        return table.to_pandas()
    if kind == "polars":
        return importlib.import_module("polars").from_arrow(table)
    return table


def _stored_kind(table: pyarrow.Table) -> str:
    kind = (table.schema.metadata or {}).get(TYPE_KEY, b"pyarrow").decode()
    return kind if kind in FRAMES else "pyarrow"


class ParquetIOManager(IOManager):
    """`<base>/<asset>/<partition>.parquet` (`__unpartitioned__.parquet` for an
    unpartitioned asset), `base` a directory or an fsspec URL with its `storage_options`
    (e.g. `{"client_kwargs": {"endpoint_url": …}}` for an S3-compatible store).

    Without a `base`, the directory is FLOWSTONE_ASSETS_DIR or `./flowstone_assets` (as
    for the `filesystem` manager), read when a path is first needed."""

    def __init__(
        self, base: str | Path | None = None, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self._base = None if base is None else str(base)
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None

    @property
    def base(self) -> str:
        """Where every asset's files are: a directory or a URL."""
        return self._base if self._base is not None else str(default_root())

    @property
    def remote(self) -> bool:
        """Whether `base` is a URL of an fsspec filesystem (else a local directory)."""
        scheme, sep, _ = self.base.partition("://")
        return bool(sep) and scheme != "file"

    def location(self, ctx: Context) -> str:
        """The file (or object) holding `ctx`'s asset and partition."""
        stem = UNPARTITIONED if ctx.partition_key is None else quote(ctx.partition_key, safe="")
        return f"{self.base.removeprefix('file://').rstrip('/')}/{ctx.asset}/{stem}.parquet"

    def check_asset(self, name: str) -> None:
        if importlib.util.find_spec("pyarrow") is None:
            raise FlowStoneError("validation_error", f"asset {name!r}: {EXTRA}")

    def check_as_type(self, as_type: type) -> None:
        if _kind_of_type(as_type) is None:
            raise ValueError(
                f"the parquet IO manager loads as {', '.join(map(_name, FRAMES))}, not {as_type!r}"
            )

    # -- storing ---------------------------------------------------------------------------

    def store(self, ctx: Context, value: Any) -> Mapping[str, Any]:
        """Write the frame whole or not at all; its rows, schema and type for the record."""
        table, kind = _to_arrow(ctx, value)
        target = self.location(ctx)
        try:
            size = self._put_remote(table, target) if self.remote else _put_local(table, Path(target))
        except OSError as error:
            raise io_error(ctx, f"cannot write {target}: {error}") from error
        return {
            "path": target,
            "type": _name(kind),
            "rows": table.num_rows,
            "schema": {field.name: str(field.type) for field in table.schema},
            "bytes": size,
        }

    def _put_remote(self, table: pyarrow.Table, target: str) -> int:
        """One upload of the whole file: the object appears complete or not at all."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue().to_pybytes()
        self._filesystem().pipe_file(target, data)
        return len(data)

    # -- loading ---------------------------------------------------------------------------

    def load(self, ctx: Context) -> Any:
        table = self._read(ctx)
        return _from_arrow(table, self._kind(ctx.as_type) or _stored_kind(table))

    def load_many(self, contexts: Sequence[Context], as_type: type | None = None) -> Any:
        """The partitions' frames concatenated in order, as one frame of `as_type` (else of
        the type the first was stored as); an empty table of that type when there is none."""
        import pyarrow as pa

        tables = [self._read(ctx) for ctx in contexts]
        kind = self._kind(as_type) or (_stored_kind(tables[0]) if tables else "pyarrow")
        combined = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
        return _from_arrow(combined, kind)

    def _kind(self, as_type: type | None) -> str | None:
        return None if as_type is None else _kind_of_type(as_type)

    def _read(self, ctx: Context) -> pyarrow.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = self.location(ctx)
        try:
            if self.remote:
                return pq.read_table(pa.BufferReader(self._filesystem().cat_file(target)))
            return pq.read_table(target)
        except (OSError, pa.ArrowException) as error:
            raise io_error(ctx, f"cannot read {target}: {error}", retryable=False) from error

    def exists(self, ctx: Context) -> bool:
        target = self.location(ctx)
        return bool(self._filesystem().exists(target)) if self.remote else Path(target).is_file()

    def delete(self, ctx: Context) -> None:
        target = self.location(ctx)
        if not self.remote:
            Path(target).unlink(missing_ok=True)
        elif self._filesystem().exists(target):
            self._filesystem().rm_file(target)

    def _filesystem(self) -> Any:
        """The fsspec filesystem of `base` (made once)."""
        if self._fs is None:
            try:
                from fsspec.core import url_to_fs
            except ImportError:
                raise FlowStoneError(
                    "validation_error", f"{self.base}: URLs need fsspec: pip install 'flowstone[parquet]'"
                ) from None
            self._fs = url_to_fs(self.base, **self.storage_options)[0]
        return self._fs


def _put_local(table: pyarrow.Table, target: Path) -> int:
    """Write `target` under a temporary name beside it, flush it to disk, rename it over
    `target`; first remove what a killed writer of the same file left."""
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    for leftover in target.parent.glob(f"{prefix}*"):
        leftover.unlink(missing_ok=True)
    temporary = target.with_name(f"{prefix}{uuid.uuid4().hex}")
    try:
        pq.write_table(table, temporary)
        with temporary.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target.stat().st_size
