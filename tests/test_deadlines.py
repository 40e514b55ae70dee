"""A test that hangs fails on a deadline instead of holding the suite until CI's limit:
pytest-timeout, configured in pyproject.toml, so the README's command has it too."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

HANGS = "import threading\n\n\ndef test_waits_for_what_never_comes():\n    threading.Event().wait()\n"


def test_every_test_of_the_suite_has_a_deadline(pytestconfig: pytest.Config) -> None:
    assert 0 < float(pytestconfig.getini("timeout")) <= 600


def test_a_hanging_test_fails_on_its_deadline(tmp_path: Path) -> None:
    (tmp_path / "test_hangs.py").write_text(HANGS)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=2", "test_hangs.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "Timeout (>2.0s)" in done.stdout, done.stdout + done.stderr
    assert time.monotonic() - started < 60
