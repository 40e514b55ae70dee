"""`python manage.py flowstone …` as real subprocesses of the shop project: FlowStone's
migrations (not Django's) make its tables, and a worker with Django loaded runs the job a
committed block enqueued — through Django's ORM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
from shop_support import HERE, count, jobs, manage, manage_env
from support import wait_until

from flowstone.testing.pytest_plugin import cloned_database

pytestmark = [pytest.mark.process, pytest.mark.usefixtures("django_project")]

COMPLETED = "SELECT count(*) FROM flowstone.jobs WHERE worker = 'shop.ShipOrder' AND state = 'completed'"
COMPLETED = "SELECT count(*) FROM flowstone.jobs WHERE worker = 'shop.ShipOrder' AND state = 'completed'"
FLOWSTONE_TABLES = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'flowstone'"


def test_flowstone_migrate_makes_flowstones_tables_and_djangos_migrate_does_not(
    flowstone_server_url: str,
) -> None:
    with cloned_database(flowstone_server_url, "template0") as url:
        django = manage(url, "migrate", "--no-input")
        assert django.returncode == 0, django.stderr
        assert count(url, FLOWSTONE_TABLES) == 0, "Django's migrations leave FlowStone's tables alone"

        done = manage(url, "flowstone", "migrate", "--json")
        assert done.returncode == 0, done.stderr
        [revision] = json.loads(done.stdout)
        assert revision["schema"] == "flowstone" and revision["previous"] is None and revision["revision"]
        assert count(url, FLOWSTONE_TABLES) > 0

        again = manage(url, "flowstone", "migrate", "--json")
        assert json.loads(again.stdout)[0]["previous"] == revision["revision"], "idempotent"


def test_flowstone_commands_see_the_projects_workers_assets_and_jobs(shop_url: str) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.workers import ShipOrder

    with transaction.atomic():
        ShipOrder.enqueue({"order_id": Order.objects.create(item="listed").id})

    listed = manage(shop_url, "flowstone", "jobs", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(j["worker"], j["queue"]) for j in json.loads(listed.stdout)] == [("shop.ShipOrder", "shop")]

    assets = manage(shop_url, "flowstone", "assets", "ls", "--json")
    assert assets.returncode == 0, assets.stderr
    assert [a["asset"] for a in json.loads(assets.stdout)] == ["shop_order_count"], "shop/assets.py was found"

    bad = manage(shop_url, "flowstone", "worker", "--queues", "nope=1")
    assert bad.returncode == 2 and "unknown queue(s) nope (known: assets, shop)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_manage_py_flowstone_worker_runs_the_committed_job_through_djangos_orm(shop_url: str) -> None:
    from django.db import transaction
    from shop.models import Order
    from shop.workers import ShipOrder

    with transaction.atomic():
        kept = Order.objects.create(item="kept")
        ShipOrder.enqueue({"order_id": kept.id})
    with pytest.raises(RuntimeError), transaction.atomic():
        dropped = Order.objects.create(item="dropped")
        ShipOrder.enqueue({"order_id": dropped.id})
        raise RuntimeError("rolled back")
    assert jobs(shop_url) == 1

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "flowstone", "worker", "--queues", "shop=2", "--log-format", "json"],
        cwd=HERE,
        env=manage_env(shop_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stderr or []), daemon=True)
    reader.start()
    try:
        shipped = "SELECT count(*) FROM shop_order WHERE shipped"
        wait_until(lambda: count(shop_url, shipped) == 1, 60, f"the order to ship:\n{''.join(lines)}")
        wait_until(lambda: count(shop_url, COMPLETED) == 1, 30, "the job to complete")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        reader.join(10)
    assert code == 0, "".join(lines)
    assert count(shop_url, "SELECT count(*) FROM shop_order") == 1 and jobs(shop_url) == 1
    assert "Traceback" not in "".join(lines)
