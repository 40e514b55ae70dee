"""The web dashboard and Prometheus metrics (`pip install 'flowstone[web]'`).

from flowstone.web import create_app, basic_auth
app = create_app(fs, auth=basic_auth("ops", "secret"), read_only=False)   # ASGI
fastapi_app.mount("/flowstone", app)                                      # or serve it:

flowstone dashboard --app myapp:fs --port 8765
flowstone metrics --app myapp:fs --port 9464
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"the FlowStone dashboard needs the 'web' extra ({missing.name} is missing): "
        "pip install 'flowstone[web]'"
    ) from missing

from flowstone.web.app import create_app
from flowstone.web.security import Auth, basic_auth, token_auth

__all__ = ["Auth", "basic_auth", "create_app", "token_auth"]
