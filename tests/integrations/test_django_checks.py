"""A bad resil configuration in a Django project: reported by Django's system checks
(``manage.py check``: ``resil.E001``, exit 1, no traceback); a server that runs no checks
still fails at start-up, not on a user's first request."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SETTINGS = """
SECRET_KEY = "k" * 50
INSTALLED_APPS = ["resil.contrib.django"]
DATABASES = {}
ROOT_URLCONF = "settings"
urlpatterns = []
"""


def project(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "settings.py").write_text(SETTINGS)
    (tmp_path / "manage.py").write_text(textwrap.dedent("""
        import os, sys
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
    """))
    (tmp_path / "resil.toml").write_text(toml)
    return tmp_path


BAD = """
unit = "a"
[resources.db]
kind = "mysql"
primary = "a"
endpionts = { a = "10.0.0.1:3306" }
"""


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(folder)})


def test_manage_py_check_reports_resil_e001(tmp_path):
    folder = project(tmp_path, BAD)
    out = run(folder, "manage.py", "check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "resil.E001" in out.stderr and "resources.db.endpionts" in out.stderr
    assert "did you mean 'endpoints'?" in out.stderr and "Traceback" not in out.stderr


def test_a_good_configuration_passes_the_checks(tmp_path):
    folder = project(tmp_path, BAD.replace("endpionts", "endpoints").replace(
        '[resources.db]', '[admin]\nlisten = "off"\n[resources.db]'))
    out = run(folder, "manage.py", "check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_a_server_that_runs_no_checks_fails_at_start(tmp_path):
    folder = project(tmp_path, BAD)
    out = run(folder, "-c", "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'settings'; "
              "from django.core.wsgi import get_wsgi_application; get_wsgi_application()")
    assert out.returncode == 1 and "ImproperlyConfigured" in out.stderr
    assert "resources.db.endpionts" in out.stderr
