"""The shop's ASGI application: Django, with FlowStone's dashboard (staff only) under /flowstone."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")
django_app = get_asgi_application()  # first: it sets Django up

from flowstone.contrib.django import PrefixRouter, staff_dashboard  # noqa: E402

application = PrefixRouter(django_app, {"/flowstone": staff_dashboard()})
