"""The parquet IO manager under a SIGKILL: a worker killed while it writes a big frame
leaves no torn file — the partition's file is absent (or whole), the torn bytes sit in a
temporary nothing reads — and the next store of the partition writes it whole and removes
that temporary."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import proc_frames
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from process_support import WorkerProcess, scalar
from support import wait_until

from flowstone import Context, FlowStone, materialize
from flowstone.assets import ParquetIOManager

pytestmark = pytest.mark.process

STATE = "SELECT state::text FROM flowstone.jobs WHERE args->>'asset_name' = 'big_frame'"


@pytest.mark.timeout(600)
def test_a_sigkill_during_a_write_never_leaves_a_torn_file(
    flowstone: FlowStone, flowstone_url: str, workers: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    proc_frames.register()
    base = tmp_path / "assets"
    env = {"FLOWSTONE_ASSETS_DIR": str(base), "FS_EXPIRY": "2", "FS_LIFELINE": "0.5"}
    target = base / "big_frame" / "__unpartitioned__.parquet"
    ctx = Context(asset="big_frame")

    def temporaries() -> list[Path]:
        return sorted(target.parent.glob(f".{target.name}.tmp-*")) if target.parent.exists() else []

    first = workers("frames1", queues="assets=1", app="proc_frames:app", **env)
    first.wait_started()
    materialize("big_frame")

    def writing() -> bool:
        return any(p.stat().st_size > 0 for p in [*temporaries(), *([target] if target.exists() else [])])

    wait_until(writing, 120, "the worker to be writing")
    first.signal(signal.SIGKILL)
    first.wait(30)

    [torn] = temporaries()
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(torn)  # the kill landed mid-write
    assert not target.exists(), "the file under the partition's name is never a partial one"
    manager = ParquetIOManager(base)
    assert not manager.exists(ctx)

    second = workers("frames2", queues="assets=1", app="proc_frames:app", **env)
    second.wait_started()
    wait_until(lambda: scalar(flowstone_url, STATE) == "completed", 180, "the rescued job to complete")
    assert pq.read_metadata(target).num_rows == proc_frames.ROWS
    assert temporaries() == [], "the next store removed what the killed writer left"
    assert manager.load(ctx).height == proc_frames.ROWS
