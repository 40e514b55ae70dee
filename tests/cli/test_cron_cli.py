"""`flowstone cron ls|add|pause|resume|delete`: stored cron entries from the command line."""

from __future__ import annotations

import json

import runtime_workers as w
from test_cli import Run, cli, one_line_error  # noqa: F401 - `cli` is a fixture

from flowstone import FlowStone, Job, Worker


class Nightly(Worker):
    queue = w.QUEUE

    async def perform(self, job: Job) -> None:
        return None


def test_cron_commands_add_list_pause_resume_and_delete(cli: Run, flowstone: FlowStone) -> None:  # noqa: F811 - the fixture
    code, out, _ = cli(
        "cron", "add", "report", "*/5 * * * *", Nightly.name, "--args", '{"kind": "daily"}', "--json"
    )
    assert code == 0 and json.loads(out)[0]["args"] == {"kind": "daily"}
    assert (
        cli("cron", "add", "quiet", "0 3 * * *", Nightly.name, "--paused", "--timezone", "Europe/Paris")[0]
        == 0
    )
    assert cli("cron", "pause", "report")[0] == 0 and cli("cron", "resume", "quiet")[0] == 0
    listed = json.loads(cli("cron", "ls", "--json")[1])
    assert [(e["name"], e["source"], e["paused"], e["timezone"]) for e in listed] == [
        ("quiet", "database", False, "Europe/Paris"),
        ("report", "database", True, "UTC"),
    ]
    assert [entry.name for entry in flowstone.cron.list()] == ["quiet", "report"]
    assert cli("cron", "delete", "quiet")[0] == 0
    one_line_error(*_code_err(cli("cron", "delete", "quiet")), "no cron entry named 'quiet'")
    one_line_error(*_code_err(cli("cron", "add", "x", "61 * * * *", Nightly.name)), "not a valid 5-field")
    one_line_error(
        *_code_err(cli("cron", "add", "y", "* * * * *", Nightly.name, "--args", "[")), "--args must be"
    )


def _code_err(result: tuple[int, str, str]) -> tuple[int, str]:
    return result[0], result[2]
