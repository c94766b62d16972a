"""Settings of the product service: a plain Django project, configured from the environment.

Everything that differs between machines comes from an environment variable, with a
default that fits ``resil.toml`` beside this file.
"""

import os

# Django's MySQL backend is written for the mysqlclient driver (module ``MySQLdb``).
# By default PyMySQL stands in for it (pure Python, nothing to compile); with
# DB_DRIVER=mysqlclient the backend runs on mysqlclient itself, which must be installed
# (it compiles against the MariaDB or MySQL client library).
if os.environ.get("DB_DRIVER", "pymysql") == "pymysql":
    import pymysql

    pymysql.install_as_MySQLdb()

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-set-DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
                 if h]

# Which unit (zone, site) this instance runs in; answers carry it, so you can see who
# served a request.
APP_UNIT = os.environ.get("APP_UNIT", "local")

INSTALLED_APPS = ["shop"]

# A JSON API without cookies: no sessions, no authentication, no CSRF middleware.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "productservice.urls"
WSGI_APPLICATION = "productservice.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.mysql",
        # "orders-db" is the name of the database in resil.toml, not a DNS name: run
        # under resil-run, it leads to the current primary wherever that is.
        "HOST": os.environ.get("DB_HOST", "orders-db"),
        "PORT": os.environ.get("DB_PORT", "3306"),
        "NAME": os.environ.get("DB_NAME", "app"),
        "USER": os.environ.get("DB_USER", "app"),
        "PASSWORD": os.environ.get("DB_PASSWORD", "apppw"),
        # Persistent connections: each worker keeps its connection for 5 minutes.
        "CONN_MAX_AGE": int(os.environ.get("DB_CONN_MAX_AGE", "300")),
        "OPTIONS": {"charset": "utf8mb4", "connect_timeout": 5},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

# Errors (a 500's traceback) on stderr, also with DEBUG off.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO"}},
}
