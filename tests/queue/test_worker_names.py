"""A worker class gets the same name however its module was loaded: enqueued by
`python mailer.py`, it is run by the worker that imported `mailer` (not discarded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowstone.cli.common import load_app
from flowstone.testing import drain_queue

MAILER = """\
from flowstone import FlowStone, Worker

fs = FlowStone(queues={"mailers": 2})


class SendEmail(Worker):
    queue = "mailers"

    def perform(self, job):
        return None


if __name__ == "__main__":
    job = fs.insert(SendEmail.new({"to": "a@b.c"}))
    print(job.worker)
"""


def run(project: Path, url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, *argv], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("mailer", ["mailer.py"]),
        ("mailer", ["-m", "mailer"]),
        ("names_shop.mail.mailer", ["names_shop/mail/mailer.py"]),
        ("names_shop.mail.mailer", ["-m", "names_shop.mail.mailer"]),
    ],
)
def test_a_script_enqueues_under_the_name_its_worker_imports(
    tmp_path: Path, flowstone_url: str, module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path.joinpath(*module.split(".")[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    for package in (tmp_path / "names_shop", tmp_path / "names_shop" / "mail"):
        if package.is_dir():
            (package / "__init__.py").touch()
    (folder / "mailer.py").write_text(MAILER)

    done = run(tmp_path, flowstone_url, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{module}.SendEmail"

    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app(f"{module}:fs", flowstone_url, None)  # as `flowstone worker --app` loads it
    try:
        result = drain_queue("mailers", fs=app)
    finally:
        app.close()
        for name in [m for m in sys.modules if m == "names_shop" or m.startswith(("names_shop.", "mailer"))]:
            del sys.modules[name]
    assert (result.completed, result.discarded) == (1, 0)


def test_a_worker_with_no_importable_module_is_refused_with_the_reason(
    tmp_path: Path, flowstone_url: str
) -> None:
    code = MAILER.replace('if __name__ == "__main__":', "if True:")
    done = run(tmp_path, flowstone_url, "-c", code)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "worker '__main__.SendEmail' is defined in __main__ with no importable module" in last
    assert "set name = '...' on the class" in last
