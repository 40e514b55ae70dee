"""A big polars frame stored by the parquet IO manager in real `flowstone worker` processes
(`--app proc_frames:app`; the app is proc_app's): writing it takes seconds, long enough to
kill a worker in the middle of it. Files go under FLOWSTONE_ASSETS_DIR."""

from typing import Any

import numpy as np
import polars as pl
from proc_app import app

from flowstone import Asset, Context
from flowstone.assets import default_assets

__all__ = ["ASSET", "ROWS", "app", "register"]

ROWS = 16_000_000


def big_frame(ctx: Context, deps: dict[str, Any]) -> pl.DataFrame:
    """ROWS rows of an index and random numbers (about 200 MB of Parquet)."""
    return pl.DataFrame({"n": np.arange(ROWS), "x": np.random.default_rng(0).random(ROWS)})


ASSET = Asset(name="big_frame", execute_fn=big_frame, io_manager="parquet")


def register() -> None:
    """Register the asset unless the default registry has it (asset tests clear it)."""
    if ASSET.name not in default_assets:
        default_assets.register(ASSET)


register()
