"""Every script in examples/ runs end to end as its docstring says, so that no example
rots: `run_pipeline.py` materializes the orders pipeline through a worker process;
`dashboard_demo.py` serves its dashboard until Ctrl-C and, with `--screenshots DIR`,
saves its pictures (with Debian's chromium, as the browser tests do)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from support import require_browser, wait_until

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = {"run_pipeline.py", "dashboard_demo.py"}
"""The scripts (`python examples/…`), each run below."""
MODULES = {"orders/pipeline.py": "the app run_pipeline.py starts a worker process on"}
"""The modules the scripts run, each run through its script."""


def test_every_example_is_run_here() -> None:
    found = {path.relative_to(EXAMPLES).as_posix() for path in EXAMPLES.rglob("*.py")}
    assert found == SCRIPTS | set(MODULES), "an example this file does not run would rot"
    mains = {name for name in found if 'if __name__ == "__main__":' in (EXAMPLES / name).read_text()}
    assert mains == SCRIPTS


def example(url: str, name: str, *argv: str) -> subprocess.Popen[str]:
    """`python examples/NAME ARGV…` on the test's database, its output piped."""
    env = {**os.environ, "FLOWSTONE_DATABASE_URL": url}
    command = [sys.executable, str(EXAMPLES / name), *argv]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_pipeline_materializes_the_pipeline_through_a_worker_process(flowstone_url: str) -> None:
    out, err = example(flowstone_url, "run_pipeline.py").communicate(timeout=180)
    assert "all materialized" in out, out + err
    assert out.count(" success ") == 15, out
    assert "lineage of daily_revenue 2025-01-17: daily_revenue#" in out
    assert "worker stopped gracefully (exit code 0)" in out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dashboard_demo_serves_its_dashboard_until_ctrl_c(flowstone_url: str) -> None:
    port = free_port()
    demo = example(flowstone_url, "dashboard_demo.py", "--port", str(port))
    lines: list[str] = []
    assert demo.stdout is not None
    threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True).start()
    try:
        wait_until(
            lambda: f"dashboard on http://127.0.0.1:{port}/ (Ctrl-C stops)\n" in lines, 120, "the demo"
        )
        site = f"http://127.0.0.1:{port}"
        queues = {q["queue"] for q in httpx.get(f"{site}/api/queues").json()["queues"]}
        assert {"mailers", "reports", "webhooks", "assets"} <= queues
        assets = {a["name"]: a["counts"] for a in httpx.get(f"{site}/api/assets").json()["assets"]}
        for name in ("raw_orders", "cleaned_orders", "daily_revenue", "revenue_forecast"):
            assert (assets[name]["fresh"], assets[name]["failed"]) == (57, 2), (name, assets[name])
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
    err = demo.stderr.read() if demo.stderr else ""
    assert (code, "Traceback" in err) == (130, False), err  # as after Ctrl-C


def test_dashboard_demo_saves_its_screenshots(flowstone_url: str, tmp_path: Path) -> None:
    require_browser()
    shots = tmp_path / "shots"
    demo = example(
        flowstone_url, "dashboard_demo.py", "--screenshots", str(shots), "--port", str(free_port())
    )
    out, err = demo.communicate(timeout=300)
    assert demo.returncode == 0, out + err
    for name in ("dashboard-queues.png", "dashboard-partitions.png"):
        assert f"saved {shots / name}" in out
        assert (shots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in err, err
