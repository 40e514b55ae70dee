"""The shop's asset graph (its own, not FlowStone's default one, so that other tests in the
same process never see the shop's assets); `shop/assets.py` fills it when Django starts."""

from flowstone.assets import AssetRegistry

SHOP_ASSETS = AssetRegistry()
