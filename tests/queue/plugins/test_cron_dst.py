"""Cron across daylight saving: each local minute fires once. A local time that occurs
twice fires at its first occurrence; local times skipped by the spring-forward fire once,
at the first minute after the gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from flowstone import Worker
from flowstone.queue.plugins import CronEntry


class Nightly(Worker):
    register = False  # its own registry (test below): cron entries must not leak into others
    queue = "cron_dst"
    cron = "30 2 * * *"
    cron_timezone = "Europe/Paris"

    def perform(self, job: object) -> None:
        return None


def fires(entry: CronEntry, start: datetime, hours: int) -> list[datetime]:
    """The UTC minutes in [start, start + hours) at which `entry` fires."""
    minutes = (start + timedelta(minutes=i) for i in range(hours * 60))
    return [minute for minute in minutes if entry.matches(minute)]


def local(minutes: list[datetime], zone: str) -> list[str]:
    return [m.astimezone(ZoneInfo(zone)).strftime("%H:%M %Z") for m in minutes]


def test_a_local_time_that_occurs_twice_fires_once() -> None:
    entry = CronEntry(Nightly.cron or "", Nightly, timezone=Nightly.cron_timezone)
    fall_back_night = datetime(2025, 10, 25, 22, 0, tzinfo=UTC)  # Paris: 26 Oct, 02:00-03:00 twice
    fired = fires(entry, fall_back_night, 6)
    assert local(fired, "Europe/Paris") == ["02:30 CEST"]


def test_a_local_time_skipped_by_spring_forward_fires_right_after_the_gap() -> None:
    entry = CronEntry("30 2 * * *", Nightly, timezone="Europe/Paris")
    spring_night = datetime(2025, 3, 29, 23, 0, tzinfo=UTC)  # Paris: 30 Mar, 02:00 → 03:00
    assert local(fires(entry, spring_night, 6), "Europe/Paris") == ["03:00 CEST"]
    hourly = CronEntry("0 * * * *", Nightly, timezone="Europe/Paris")
    assert local(fires(hourly, spring_night, 6), "Europe/Paris") == [
        "00:00 CET",
        "01:00 CET",
        "03:00 CEST",
        "04:00 CEST",
        "05:00 CEST",
        "06:00 CEST",
    ], "the skipped 02:00 and the real 03:00 are one tick"


NIGHTS = [
    ("Europe/Paris", datetime(2025, 3, 29, 23, 0, tzinfo=UTC)),
    ("Europe/Paris", datetime(2025, 10, 25, 22, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2025, 3, 9, 5, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2025, 11, 2, 4, 0, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2025, 4, 5, 13, 0, tzinfo=UTC)),  # a 30-minute shift
]


@settings(max_examples=25, deadline=None)
@given(night=st.sampled_from(NIGHTS), hour=st.integers(0, 4), minute=st.integers(0, 59))
def test_a_daily_time_fires_exactly_once_on_a_transition_night(
    night: tuple[str, datetime], hour: int, minute: int
) -> None:
    zone, midnight = night
    entry = CronEntry(f"{minute} {hour} * * *", Nightly, timezone=zone)
    assert midnight.astimezone(ZoneInfo(zone)).hour == 0
    assert len(fires(entry, midnight, 6)) == 1


def test_cron_timezone_on_a_worker_makes_its_entry() -> None:
    from flowstone import WorkerRegistry
    from flowstone.queue.plugins.cron import entries_from

    registry = WorkerRegistry()
    registry.register(Nightly)
    [entry] = entries_from(registry)
    assert (entry.expression, entry.timezone) == ("30 2 * * *", "Europe/Paris")
