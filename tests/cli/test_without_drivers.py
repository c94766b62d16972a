"""resil installed without extras (``pip install resil``): no PyMySQL, no redis-py.

The agent runs, and each part that would need a missing library says which extra
installs it, before it does anything: ``resil-run`` with a Redis control plane or Redis
sessions exits 2 before the program runs; operator commands exit 2 before touching a
server; ``resil doctor`` says so. The environment is a real virtualenv holding only
resil's required dependencies (linked from the test environment's own copies).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

SITE = Path(sysconfig.get_paths()["purelib"])
REQUIRED = ("wrapt", "opentelemetry", "typing_extensions.py")
"""What ``pip install resil`` brings (wrapt, opentelemetry-api and its dependency)."""


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """A virtualenv with resil and its required dependencies only; its bin directory."""
    root = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")],
                   check=True)
    links = root / "links"
    links.mkdir()
    import resil
    for name in REQUIRED:
        (links / name).symlink_to(SITE / name)
    for dist in SITE.glob("*.dist-info"):
        if dist.name.split("-")[0] in ("resil", "wrapt", "opentelemetry_api",
                                       "typing_extensions"):
            (links / dist.name).symlink_to(dist)
    src = Path(resil.__file__).parent.parent
    site = Path(subprocess.run([str(root / "venv/bin/python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "resil-bare.pth").write_text(f"{links}\n{src}\n")
    bin_dir = root / "venv/bin"
    for script in ("resil", "resil-run"):
        entry = {"resil": "resil.cli.main", "resil-run": "resil.cli.run"}[script]
        (bin_dir / script).write_text(f"#!{bin_dir / 'python'}\nimport sys\n"
                                      f"from {entry} import main\nsys.exit(main())\n")
        (bin_dir / script).chmod(0o755)
    return bin_dir


def run(bare: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RESIL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bare}{os.pathsep}{env['PATH']}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def config(tmp_path: Path, control: str = "", sessions: str = "") -> Path:
    path = tmp_path / "resil.toml"
    path.write_text(textwrap.dedent(f"""
        unit = "a"
        [control]
        url = "{control or (tmp_path / 'state.json').as_uri()}"
        {sessions}
        [resources.orders-db]
        kind = "mysql"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:1", b = "127.0.0.2:1" }}
        admin_user = "root"
        [resources.cache]
        kind = "redis"
        primary = "a"
        endpoints = {{ a = "127.0.0.1:2", b = "127.0.0.2:2" }}
    """))
    return path


def test_the_environment_really_lacks_the_drivers(bare, tmp_path):
    out = run(bare, ["python", "-c", "import resil, importlib.util as u; "
                     "print(u.find_spec('pymysql'), u.find_spec('redis'))"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None"]


def test_the_agent_runs_a_program_without_drivers(bare, tmp_path):
    config(tmp_path)
    out = run(bare, ["resil-run", "python", "-c",
                     "from resil import registry; print('agent', registry.runtime() is not None)"],
              tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "agent True"


def test_a_redis_control_plane_names_the_extra_before_the_program_runs(bare, tmp_path):
    config(tmp_path, control="redis://127.0.0.1:1/0")
    out = run(bare, ["resil-run", "python", "-c", "print('ran')"], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ran" not in out.stdout
    assert "control.url" in out.stderr
    assert "needs redis-py" in out.stderr and "pip install 'resil[redis]'" in out.stderr


def test_redis_sessions_name_the_extra_before_the_program_runs(bare, tmp_path):
    config(tmp_path, sessions='[sessions]\nresource = "cache"')
    out = run(bare, ["resil-run", "python", "-c", "print('ran')"], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ran" not in out.stdout
    assert "sessions.resource = 'cache'" in out.stderr
    assert "pip install 'resil[redis]'" in out.stderr


@pytest.mark.parametrize(("command", "extra"), [
    (["db", "switch", "orders-db", "--to", "b"], "mysql"),
    (["db", "switch", "cache", "--to", "b"], "redis"),
    (["db", "unlock", "orders-db"], "mysql"),
    (["monitor"], "mysql"),
])
def test_operator_commands_refuse_before_touching_a_server(bare, tmp_path, command, extra):
    config(tmp_path)
    out = run(bare, ["resil", *command], tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"pip install 'resil[{extra}]'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "state.json").exists()     # nothing was published


def test_doctor_says_what_is_missing(bare, tmp_path):
    config(tmp_path)
    out = run(bare, ["resil", "doctor", "--config", str(tmp_path / "resil.toml")], tmp_path)
    assert "pip install 'resil[mysql]'" in out.stdout + out.stderr
    assert "pip install 'resil[redis]'" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
