"""Settings of the shop project the Django integration is tested with.

The database is SHOP_DATABASE_URL (the test gives each test its own); the tests running
Django in their own process point Django at each test's database themselves."""

import os

from psycopg.conninfo import conninfo_to_dict
from shop.graph import SHOP_ASSETS

_db = conninfo_to_dict(os.environ.get("SHOP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"))

SECRET_KEY = "shop-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "djproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/login/"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "flowstone.contrib.django",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "shop"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "ATOMIC_REQUESTS": os.environ.get("SHOP_ATOMIC_REQUESTS") == "1",
    },
    "legacy": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
FLOWSTONE = {"queues": {"shop": 2}, "assets": SHOP_ASSETS, "poll_interval": 0.2}
