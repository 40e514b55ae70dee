"""The README's main command keeps working: the demo materializes through a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "run_pipeline.py"


def test_the_demo_materializes_the_pipeline_through_a_worker_process(flowstone_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        env={**os.environ, "FLOWSTONE_DATABASE_URL": flowstone_url},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all materialized" in done.stdout
    assert done.stdout.count(" success ") == 15, done.stdout
    assert "lineage of daily_revenue 2025-01-17: daily_revenue#" in done.stdout
    assert "worker stopped gracefully (exit code 0)" in done.stdout
