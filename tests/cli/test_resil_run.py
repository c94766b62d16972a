"""resil-run: bootstrap, pass-through of exit codes and signals, chaining, bad config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
RESIL_RUN = str(BIN / "resil-run")

APP = textwrap.dedent("""
    import sys
    import pymysql, redis
    from resil import registry
    conn = pymysql.connect(host="orders-db", user="app", password="apppw")
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        print("mysql", cur.fetchone()[0])
    print("redis", redis.Redis(host="cache").config_get("port")["port"])
    print("agent", registry.runtime() is not None)
""")


def run(args, *, cwd, env=None, timeout=60, **kw):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RESIL_")}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env['PATH']}"
    full_env.update(env or {})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def test_python_app_lands_on_the_primaries(pair_config, redis_pair, tmp_path):
    (tmp_path / "app.py").write_text(APP)
    out = run([RESIL_RUN, "python", "app.py"], cwd=tmp_path)      # ./resil.toml is found
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["mysql 1", f"redis {redis_pair.primary.port}",
                                          "agent True"]


def test_python_dash_m_and_config_flag(pair_config, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(APP)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run([RESIL_RUN, "--config", str(pair_config), "python", "-m", "pkg"], cwd=elsewhere,
              env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mysql 1\n")


def test_exit_code_passes_through(pair_config, tmp_path):
    out = run([RESIL_RUN, "python", "-c", "import sys; sys.exit(7)"], cwd=tmp_path)
    assert out.returncode == 7


def test_signals_pass_through(pair_config, tmp_path):
    (tmp_path / "sleeper.py").write_text(textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: (print("got SIGTERM", flush=True), sys.exit(3)))
        print("ready", flush=True)
        time.sleep(30)
    """))
    proc = subprocess.Popen([RESIL_RUN, "python", "sleeper.py"], cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)       # the pid is the program's: resil-run exec'd it
        assert proc.wait(10) == 3
        assert proc.stdout.read() == "got SIGTERM\n"
    finally:
        proc.kill()
    proc = subprocess.Popen([RESIL_RUN, "python", "-c", "import time; print('ready', flush=True);"
                             " time.sleep(30)"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) != 0


def test_invalid_config_exits_2_before_the_program(write_config, tmp_path):
    write_config('unit = "nowhere"\n[resources.db]\nkind = "mysql"\n'
                 'endpoints = { a = "127.0.0.1:3306" }\n')
    marker = tmp_path / "ran"
    out = run([RESIL_RUN, "python", "-c", f"open({str(marker)!r}, 'w')"], cwd=tmp_path)
    assert out.returncode == 2
    assert "unit = 'nowhere'" in out.stderr and "resil.toml" in out.stderr
    assert not marker.exists()
    out = run([RESIL_RUN, "--config", "missing.toml", "python", "-c", "pass"], cwd=tmp_path)
    assert out.returncode == 2 and "not found" in out.stderr


def test_command_not_found_and_no_command(pair_config, tmp_path):
    assert run([RESIL_RUN, "no-such-program-x"], cwd=tmp_path).returncode == 127
    assert run([RESIL_RUN], cwd=tmp_path).returncode == 2


def test_disabled_runs_the_program_untouched(tmp_path):
    (tmp_path / "resil.toml").write_text("this is not toml [")
    probe = "import sys, os; print('resil' in sys.modules, os.environ.get('PYTHONPATH'))"
    out = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path, env={"RESIL_DISABLED": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "False None\n"


def test_users_sitecustomize_is_chained(pair_config, tmp_path):
    user = tmp_path / "user_site"
    user.mkdir()
    (user / "sitecustomize.py").write_text("import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n")
    probe = ("import os, sys, sitecustomize; from resil import registry; "
             "print(os.environ.get('USER_SITECUSTOMIZE'), registry.runtime() is not None, "
             "sitecustomize.__file__.startswith(sys.argv[1]))")
    out = run([RESIL_RUN, "python", "-c", probe, str(user)], cwd=tmp_path,
              env={"PYTHONPATH": str(user)})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ran True True\n"


def test_child_processes_get_the_agent(pair_config, tmp_path):
    child = "from resil import registry; print(registry.runtime() is not None)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    out = run([RESIL_RUN, "python", "-c", parent], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "True\n"


def test_only_the_admin_thread_at_start_up(pair_config, tmp_path):
    """The watch and heartbeat start on first use; the admin endpoint cannot wait."""
    probe = "import threading; print(sorted(t.name for t in threading.enumerate()))"
    out = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['MainThread', 'resil-admin']\n"
    out = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path,
              env={"RESIL_ADMIN_LISTEN": "off"})
    assert out.stdout == "['MainThread']\n"


@pytest.mark.parametrize("order", ["otel-outside", "otel-inside"])
def test_composes_with_opentelemetry_instrument(pair_config, tmp_path, order):
    otel = [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "none",
            "--metrics_exporter", "none", "--logs_exporter", "none"]
    probe = textwrap.dedent("""
        import pymysql
        from resil import registry
        from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor
        conn = pymysql.connect(host="orders-db", user="app", password="apppw")
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            sid = cur.fetchone()[0]
        otel = PyMySQLInstrumentor().is_instrumented_by_opentelemetry
        print(registry.runtime() is not None, otel, sid)
    """)
    (tmp_path / "probe.py").write_text(probe)
    command = [*otel, RESIL_RUN, "python", "probe.py"] if order == "otel-outside" \
        else [RESIL_RUN, *otel, "python", "probe.py"]
    out = run(command, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "True True 1"


@pytest.mark.parametrize("order", ["otel-outside", "otel-inside"])
def test_default_admin_port_beside_opentelemetrys_prometheus_exporter(pair_config, tmp_path,
                                                                       order):
    """Both default to port 9464: with OTel's exporter on, the agent takes 9465, and both
    endpoints answer, whichever starts first."""
    import socket
    for port in (9464, 9465):
        with socket.socket() as probe_socket:
            if probe_socket.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is taken on this machine")
    text = pair_config.read_text()
    pair_config.write_text(text.replace('[admin]\nlisten = "127.0.0.1:0"\n', ""))
    assert "[admin]" not in pair_config.read_text()
    otel = [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "none",
            "--metrics_exporter", "prometheus", "--logs_exporter", "none"]
    probe = textwrap.dedent("""
        import json, urllib.request
        otel = urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=5).read()
        ours = urllib.request.urlopen("http://127.0.0.1:9465/healthz", timeout=5).read()
        print(b"# TYPE" in otel or b"python_info" in otel or otel == b"", json.loads(ours))
    """)
    (tmp_path / "probe.py").write_text(probe)
    command = [*otel, RESIL_RUN, "python", "probe.py"] if order == "otel-outside" \
        else [RESIL_RUN, *otel, "python", "probe.py"]
    out = run(command, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("True {"), out.stdout
    assert "admin endpoint not started" not in out.stderr
    # Without OTel's exporter the default stays 9464.
    out = run([RESIL_RUN, "python", "-c", "import urllib.request; print(urllib.request."
               "urlopen('http://127.0.0.1:9464/healthz', timeout=5).status)"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200\n"


def test_the_front_process_imports_almost_nothing_for_a_python_program(tmp_path):
    """`resil-run python ...` leaves the configuration check to the program's bootstrap
    (one check, one start-up cost): the front parses no TOML and loads no typing."""
    probe = textwrap.dedent("""
        import os, sys
        os.execvpe = lambda *a: print(sorted(m for m in sys.modules if m.startswith(
            ("resil", "tomllib", "typing", "dataclasses", "argparse", "logging"))))
        from resil.cli.run import main
        main(sys.argv[1:])
    """)
    out = run([sys.executable, "-c", probe, "python", "-c", "pass"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("['resil', 'resil._entry', 'resil._version', 'resil.bootstrap', "
                          "'resil.cli', 'resil.cli.run', 'resil.errors']\n")


def test_a_bad_config_stops_any_command_but_not_the_programs_children(write_config, tmp_path):
    write_config('unit = "nowhere"\n')
    marker = tmp_path / "ran"
    # Not a Python program: checked before the exec.
    out = run([RESIL_RUN, "sh", "-c", f"touch {marker}"], cwd=tmp_path)
    assert out.returncode == 2 and "unit = 'nowhere'" in out.stderr
    assert not marker.exists()
    # A script run by Python through `env`: checked by its bootstrap, before its code.
    script = tmp_path / "tool"
    script.write_text(f"#!/usr/bin/env -S python3 -u\nopen({str(marker)!r}, 'w')\n")
    script.chmod(0o755)
    out = run([RESIL_RUN, str(script)], cwd=tmp_path)
    assert out.returncode == 2 and "resil-run: configuration error" in out.stderr
    assert not marker.exists()


def test_only_the_program_itself_is_stopped_by_a_bad_config(pair_config, tmp_path):
    """The program's own Python children never exit 2: a configuration broken after the
    start leaves them running, without the agent (fail-open), as before."""
    program = textwrap.dedent(f"""
        import subprocess, sys
        open({str(pair_config)!r}, "w").write('unit = "nowhere"\\n')
        child = subprocess.run([sys.executable, "-c", "print('child ran')"],
                               capture_output=True, text=True)
        print(child.returncode, child.stdout.strip(), "agent not started" in child.stderr)
    """)
    out = run([RESIL_RUN, "python", "-c", program], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "0 child ran True\n"


@pytest.mark.parametrize("first_line, python", [
    ("#!/usr/bin/python3\n", True),
    ("#!/usr/bin/env python3.12\n", True),
    ("#!/usr/bin/env -S pypy3 -u\n", True),
    ("#!/bin/sh\n", False),
    ("#!/usr/bin/env node\n", False),
    ("print('no #! line')\n", False),
])
def test_which_commands_run_python(tmp_path, first_line, python):
    from resil.cli.run import _runs_python
    script = tmp_path / "prog"
    script.write_text(first_line)
    script.chmod(0o755)
    assert _runs_python("prog", {"PATH": str(tmp_path)}) is python
    assert _runs_python(str(script), {}) is python
    assert _runs_python(sys.executable, {}) is True
    assert _runs_python("no-such-program", {"PATH": str(tmp_path)}) is False


def test_the_agent_loads_no_module_it_does_not_need_yet(pair_config, tmp_path):
    """Start-up imports only what the agent uses at once: HTTP routing loads with an HTTP
    library, the file watch's ctypes with the watch, signing's hashlib with a signed
    signal, did-you-mean's difflib with a mistake, logging with a line to write; no
    typing at all, and tomllib only when the configuration file is new or changed."""
    lazy = ("logging", "resil.retry", "resil.integrations._http", "resil.health", "resil.checks",
            "resil.budget", "ctypes", "hashlib", "tempfile",
            "difflib", "shutil", "argparse", "importlib.metadata", "typing", "tomllib")
    probe = f"import sys; print([m for m in {lazy!r} if m in sys.modules])"
    first = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path)
    # parsed once (tomllib brings typing), then kept
    assert first.stdout == "['typing', 'tomllib']\n", first.stdout
    out = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[]\n", out.stdout
    out = run([RESIL_RUN, "python", "-c", "import requests, sys; print('resil.retry' in "
               "sys.modules, 'resil.integrations._http' in sys.modules)"], cwd=tmp_path)
    assert out.stdout == "True True\n", out.stderr


def test_uwsgi_is_told_to_run_cpythons_fork_hooks(pair_config, tmp_path):
    """uWSGI skips CPython's fork hooks unless told: resil-run tells it through the
    environment (any program may read it; uWSGI alone acts on it), keeping a value the
    user set."""
    probe = "import os; print(os.environ.get('UWSGI_PY_CALL_UWSGI_FORK_HOOKS'))"
    out = run([RESIL_RUN, "--config", str(pair_config), "python", "-c", probe], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1\n"
    out = run([RESIL_RUN, "--config", str(pair_config), "python", "-c", probe], cwd=tmp_path,
              env={"UWSGI_PY_CALL_UWSGI_FORK_HOOKS": "0"})
    assert out.stdout == "0\n"
    out = run([RESIL_RUN, "python", "-c", probe], cwd=tmp_path, env={"RESIL_DISABLED": "1"})
    assert out.stdout == "None\n"                   # disabled: untouched
