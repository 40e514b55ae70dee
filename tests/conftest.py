"""FlowStone's own fixtures come from its pytest plugin (registered as an entry point)."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, as FlowStone's runtime does."""
    return "asyncio"
