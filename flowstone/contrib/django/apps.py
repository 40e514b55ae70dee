"""The Django app `flowstone.contrib.django`: discovers workers and assets, and keeps the
instance in step with the settings."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules

from flowstone.contrib.django import instance

DISCOVERED = ("workers", "assets")
"""The modules of every installed app imported when Django starts (`shop/workers.py`,
`shop/assets.py`): their workers and assets are then known to every process."""


class FlowStoneConfig(AppConfig):
    """`INSTALLED_APPS += ["flowstone.contrib.django"]` (label `flowstone`)."""

    name = "flowstone.contrib.django"
    label = "flowstone"
    verbose_name = "FlowStone"

    @property
    def fs(self) -> instance.DjangoFlowStone:
        """The project's instance (`flowstone.contrib.django.fs`)."""
        return instance.get_flowstone()

    def ready(self) -> None:
        """Build the instance, import each app's `workers` and `assets` modules; rebuild
        the instance when a test overrides FLOWSTONE or DATABASES."""
        instance.get_flowstone()  # settings checked at start; nothing connects yet
        autodiscover_modules(*DISCOVERED)
        setting_changed.connect(_setting_changed, dispatch_uid="flowstone.contrib.django")


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("FLOWSTONE", "DATABASES"):
        instance.reset()
