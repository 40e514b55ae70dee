"""README.md and the documentation site run as written: their code blocks are run here, in
order (the README, then the pages in the order of mkdocs.yml's `nav`: a page may use the
files and the data an earlier page made), in one fresh project directory against this
test's database, so they cannot rot.

A block's info string says how it runs:
- ```python title="NAME"  written to the project as NAME (later blocks import it; the
                        site shows NAME above the block);
- ```python             run as a script in the project;
- ```bash               run by bash -e in the project, `flowstone` and `pytest` on the PATH;
                        what it starts in the background (`flowstone worker … &`) is
                        stopped with SIGTERM when the block ends, and must exit cleanly;
- ```sql                each statement run on the database;
- ```bash install       every extra it names exists;
- ```bash dev           every nox session it names exists, and the other commands run;
- ```                   (no language) not code: a diagram or an output, shown as is.
The README's first two blocks are the demo and the test suite: the demo test runs the
first (after the install step that `.ci/run` shares), and `.ci/run` runs the second; a
block that is exactly one of those two commands is not run here either.
Not run: the pages in NOT_RUN (each says why).
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'"
DEMO = f"{INSTALL} && .venv/bin/python examples/run_pipeline.py"
SUITE = f"{INSTALL} && .venv/bin/pytest -n 2"
TITLE = re.compile(r'^title="(?P<name>[^"]+)"$')
# The benchmark report and its sittings' records (docs/results/, out of the site's nav):
# their commands are hours of load with the peers' harness (../shared/bench); what they
# measure is checked by tests/test_benchmarks.py.
NOT_RUN = ("docs/benchmarks.md", "docs/results/")


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    info: str
    body: str

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def options(self) -> list[str]:
        return self.info.split()[1:]

    @property
    def file(self) -> str | None:
        """The file a `python title="NAME"` block is written to."""
        match = TITLE.match(" ".join(self.options))
        return match.group("name") if self.kind == "python" and match else None

    @property
    def runs(self) -> bool:
        """Run by test_the_code_runs_as_written (the others are checked apart, or are text)."""
        checked_apart = self.info in ("bash install", "bash dev") or self.body.strip() in (DEMO, SUITE)
        return self.info != "" and not checked_apart and not self.path.startswith(NOT_RUN)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ```{self.info}"


def pages() -> list[str]:
    """README.md, then the site's pages in the order of its navigation."""
    nav = (ROOT / "mkdocs.yml").read_text().partition("\nnav:\n")[2]
    return ["README.md", *(f"docs/{page}" for page in re.findall(r"^\s+- (?:.*: )?(\S+\.md)$", nav, re.M))]


def blocks_of(path: str) -> list[Block]:
    text = (ROOT / path).read_text()
    return [
        Block(path, text.count("\n", 0, m.start()) + 1, m.group("info").strip(), m.group("body"))
        for m in FENCE.finditer(text)
    ]


BLOCKS = [block for page in pages() for block in blocks_of(page)]
README = [block for block in BLOCKS if block.path == "README.md"]


def test_the_readme_starts_with_the_demo_and_the_test_suite() -> None:
    first, second = README[:2]
    assert (first.info, first.body.strip()) == ("bash", DEMO)
    assert (second.info, second.body.strip()) == ("bash", SUITE)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"{SUITE} || exit" in ci, ".ci/run runs the README's command (and stops if it fails)"
    examples = (ROOT / "tests" / "test_examples.py").read_text()
    assert '"run_pipeline.py"' in examples, "the examples test runs it"
    assert (ROOT / "README.md").read_text().index(DEMO) < 400, "the README starts with the two commands"


def test_every_page_of_the_site_is_run_in_its_order() -> None:
    on_disk = {str(path.relative_to(ROOT)) for path in (ROOT / "docs").rglob("*.md")}
    on_disk -= {path for path in on_disk if path.startswith("docs/results/")}  # not in the nav
    assert set(pages()) == {"README.md", *on_disk}, "mkdocs.yml's nav lists every page once"
    assert len(pages()) == len(set(pages()))


def test_every_block_is_of_a_kind_this_test_runs() -> None:
    known = {"", "python", 'python title=""', "bash", "bash install", "bash dev", "sql"}
    for block in (block for block in BLOCKS if not block.path.startswith(NOT_RUN)):
        kind = 'python title=""' if block.file else block.info
        assert kind in known, f"{block}: unknown block kind (see the docstring of {__name__})"
    files = [block.file for block in BLOCKS if block.file]
    assert len(files) == len(set(files)), "each file is written by one block"


def test_the_install_block_names_real_extras() -> None:
    [block] = [b for b in BLOCKS if b.info == "bash install"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = re.findall(r"flowstone\[(\w+)\]", block.body)
    assert named and set(named) <= set(extras)
    assert all(line.startswith("pip install ") for line in block.body.splitlines() if line.strip())


def nox_sessions() -> set[str]:
    """The sessions nox lists, a session run under several Pythons also by its own name."""
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    names = {line.split()[1] for line in listed.splitlines() if line[:2] in ("* ", "- ")}
    return names | {name.split("-")[0] for name in names}


def test_the_development_block_names_real_tasks() -> None:
    [block] = [b for b in BLOCKS if b.info == "bash dev"]
    sessions = nox_sessions()
    for line in block.body.splitlines():
        command = line.split("#")[0].split()
        if command[0].endswith("nox"):
            assert set(command[command.index("-s") + 1 :]) <= sessions, line
        else:
            python = [sys.executable, *command[1:]]
            assert subprocess.run(python, cwd=ROOT, capture_output=True, timeout=60).returncode == 0, line


def test_every_declared_python_is_tested() -> None:
    """The classifiers name the Pythons nox runs the suite under, and CI runs the newest."""
    noxfile = ast.parse((ROOT / "noxfile.py").read_text())
    [pythons] = [
        ast.literal_eval(node.value)
        for node in noxfile.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PYTHONS"
    ]
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    versions = [c.removeprefix("Programming Language :: Python :: ") for c in classifiers]
    declared = [v for v in versions if v.startswith("3.")]
    assert declared == pythons, "pyproject's classifiers list exactly the Pythons noxfile tests"
    assert {f"tests-{python}" for python in pythons} <= nox_sessions()
    newest = max(pythons, key=lambda version: tuple(map(int, version.split("."))))
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"newest={newest}\n" in ci and '".venv-$newest/bin/pytest" -n 2' in ci, "CI runs the newest too"


def test_the_settings_table_lists_every_setting_with_its_variable() -> None:
    from flowstone.queue.config import Settings

    text = (ROOT / "docs" / "reference" / "settings.md").read_text()
    for name in Settings.model_fields:
        option = "schema" if name == "schema_name" else name
        variable = "FLOWSTONE_SCHEMA" if name == "schema_name" else f"FLOWSTONE_{name.upper()}"
        assert re.search(rf"^\| `{option}` \| .* \| `{variable}` \|", text, re.MULTILINE), name


class Project:
    """The reader's project directory, on this test's database."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLOWSTONE_"))}
        self.env = {
            **env,
            "FLOWSTONE_DATABASE_URL": url,
            "FLOWSTONE_DATA_DIR": str(path / ".data"),
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(path),
        }

    def run(self, block: Block, index: int) -> None:
        if block.file:
            (self.path / block.file).write_text(block.body)
        elif block.kind == "python":
            script = self.path / f"block_{index}.py"
            script.write_text(block.body)
            self.check(block, [sys.executable, str(script)])
        elif block.kind == "sql":
            with psycopg.connect(self.url, autocommit=True) as conn:
                for statement in filter(str.strip, block.body.split(";")):
                    conn.execute(statement)
        else:
            self.bash(block)

    def check(self, block: Block, command: list[str]) -> None:
        done = subprocess.run(
            command, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{block} failed:\n{done.stdout}\n{done.stderr}"

    def bash(self, block: Block) -> None:
        """Run the block; then stop what it left in the background (its workers) with SIGTERM.
        Output goes to a file: a background worker keeps a pipe open after bash exits."""
        log = self.path / f"block_{block.line}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                ["bash", "-e", "-c", block.body],
                cwd=self.path,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                process.wait(timeout=120)
            finally:
                stopped = stop_group(process.pid)
        out = log.read_text()
        assert process.returncode == 0, f"{block} failed:\n{out}"
        assert stopped, f"{block}: what it started in the background did not stop on SIGTERM:\n{out}"
        assert "Traceback" not in out, f"{block}:\n{out}"


def stop_group(group: int, timeout: float = 30) -> bool:
    """SIGTERM every process left in the group; True once they all exited within `timeout`."""
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)  # polling a process group's exit, which has no event to wait on
    os.killpg(group, signal.SIGKILL)
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="runs the shell blocks with bash")
@pytest.mark.timeout(1200)  # every block of the README and the site: about three minutes, seven under load
def test_the_code_runs_as_written(tmp_path: Path, flowstone_url: str) -> None:
    project = Project(tmp_path, flowstone_url)
    for index, block in enumerate(BLOCKS):
        if block.runs:
            project.run(block, index)
    with psycopg.connect(flowstone_url) as conn:
        revenue = conn.execute(
            "SELECT value FROM flowstone_assets.daily_revenue WHERE partition = '2025-01-15'"
        )
        assert revenue.fetchone() == ({"total": 25},)
        window = conn.execute(
            "SELECT value FROM flowstone_assets.visits_3_days WHERE partition = '2025-01-03'"
        )
        assert window.fetchone() == (60,), "docs/guides/partitions.md: 10 + 20 + 30"
        regional = conn.execute(
            "SELECT value FROM flowstone_assets.regional_orders WHERE partition = '2025-01-02|eu'"
        )
        assert regional.fetchone() == ("eu: 2 orders on 2025-01-02",), "the multi-dimensional example"
