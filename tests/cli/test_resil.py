"""The operator command: `resil config check` and `resil status`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

RESIL = str(Path(sys.executable).parent / "resil")
from servers.config import PASSWORDS  # noqa: E402

EXAMPLE = Path(__file__).parents[2] / "examples" / "design-example.toml"


def resil(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RESIL, *args], capture_output=True, text=True, timeout=30, cwd=cwd)


def test_config_check_prints_the_topology():
    out = resil("config", "check", str(EXAMPLE))
    assert out.returncode == 0, out.stderr
    assert "unit: beijing" in out.stdout
    assert "orders-db (mysql)  primary beijing" in out.stdout
    assert "hangzhou: 10.0.2.5:3306" in out.stdout
    assert "aliases: orders-db, mysql.internal:3306" in out.stdout


def test_config_check_error_exits_2_naming_the_key(write_config):
    bad = write_config(EXAMPLE.read_text().replace('"10.0.2.6:6379"', '"10.0.2.6"'))
    out = resil("config", "check", str(bad))
    assert out.returncode == 2
    assert out.stdout == ""
    assert f"{bad}: resources.cache.endpoints.hangzhou = '10.0.2.6': malformed address" \
        in out.stderr


def test_the_readmes_configuration_checks_and_has_what_a_switch_needs(tmp_path):
    import re
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    toml = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    path = tmp_path / "resil.toml"
    path.write_text(toml)
    out = resil("config", "check", str(path))
    assert out.returncode == 0, out.stderr
    from resil.config import load_config
    db = load_config(path, env={}).resources["orders-db"]
    assert db.admin_user and db.replication_user      # `resil db switch` needs both


def test_doctor_reports_integrations_control_plane_and_endpoints(pair_config, tmp_path):
    out = subprocess.run([RESIL, "doctor", "--config", str(pair_config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pymysql    (PyMySQL " in out.stdout and "patched when imported" in out.stdout
    assert "reachable, epoch" in out.stdout and "no problems found" in out.stdout
    # A dead endpoint and a disabled integration (every address here is loopback).
    from servers import free_port
    dead = free_port()
    text = re.sub(r'(\[resources.cache\][^\[]*?b = )"127.0.0.1:\d+"', rf'\1"127.0.0.1:{dead}"',
                  pair_config.read_text(), flags=re.S)
    bad = tmp_path / "bad.toml"
    bad.write_text('disabled_integrations = ["redis"]\n' + text)
    out = subprocess.run([RESIL, "doctor", "--config", str(bad), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["problems"] == [f"cache 127.0.0.1:{dead} (unit b): Connection refused"]
    assert {"name": "redis", "status": "disabled by the configuration"} in \
        report["integrations"]
    assert report["control"]["reachable"] is True


def test_config_check_refuses_a_misspelt_variable_or_integration():
    def check(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RESIL, "config", "check", str(EXAMPLE)], capture_output=True,
                              text=True, timeout=30, env={**os.environ, **env})
    out = check(RESIL_UNTI="hangzhou")
    assert out.returncode == 2, out.stdout
    assert "RESIL_UNTI: not a resil setting; did you mean RESIL_UNIT?" in out.stderr
    out = check(RESIL_DISABLED_INTEGRATIONS="pymsql")
    assert out.returncode == 2, out.stdout
    assert "disabled_integrations = 'pymsql': no such integration; did you mean pymysql?" \
        in out.stderr and "environment variable RESIL_DISABLED_INTEGRATIONS" in out.stderr
    assert check(RESIL_DISABLED_INTEGRATIONS="pymysql,redis").returncode == 0


def test_a_reader_that_leaves_early_is_no_traceback():
    """`resil config check | head -1`: the pipe closes before resil writes."""
    proc = subprocess.Popen([RESIL, "config", "check", str(EXAMPLE)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 141 and "Traceback" not in err and "Broken" not in err, err


def test_status_shows_published_state(pair_config, publish, mariadb_pair):
    out = resil("status", "--config", str(pair_config))
    assert out.returncode == 0, out.stderr
    assert "epoch 0 (nothing published" in out.stdout
    publish(orders_db="b")
    out = resil("status", "--config", str(pair_config))
    assert "epoch 1 (published" in out.stdout and ", signed" not in out.stdout
    assert f"orders-db            mysql  primary b (127.0.0.1:{mariadb_pair.replica.port})" \
        in out.stdout
    report = json.loads(resil("status", "--json", "--config", str(pair_config)).stdout)
    assert report["control"]["epoch"] == 1
    assert report["resources"]["orders-db"]["primary"] == {
        "unit": "b", "endpoint": f"127.0.0.1:{mariadb_pair.replica.port}"}
    assert report["weights"] == {"a": 1.0, "b": 1.0} and report["locks"] == {}


def test_status_shows_a_switch_being_prepared_until_its_intent_lapses(pair_config):
    """A switch's intent (spares opening before its lock) is shown with its holder and
    how long it stands; a lapsed one is not shown."""
    import time

    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, Intent, issuer
    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, config.signing_key)
    state = ControlState.initial(config.topology).evolve(intents={
        "orders-db": Intent("op@h:1/ab12", "b", time.time() + 60),
        "cache": Intent("op@h:2/cd34", "b", time.time() - 1)})
    plane.publish(state, issuer=issuer())
    out = resil("status", "--config", str(pair_config))
    assert out.returncode == 0, out.stderr
    assert "intents:  planned switches about to lock" in out.stdout, out.stdout
    assert "  orders-db            switch to b by op@h:1/ab12; lapses in 5" in out.stdout
    assert "op@h:2/cd34" not in out.stdout
    report = json.loads(resil("status", "--json", "--config", str(pair_config)).stdout)
    assert list(report["intents"]) == ["orders-db"]
    assert report["intents"]["orders-db"]["target"] == "b"
    assert 50 < report["intents"]["orders-db"]["expires_in"] <= 60


def test_a_resource_or_unit_that_does_not_exist_exits_2_like_any_bad_input():
    for args in (("db", "switch", "nope", "--to", "beijing"),
                 ("db", "switch", "orders-db", "--to", "mars"),
                 ("db", "rejoin", "nope", "beijing")):
        out = resil(*args, "--config", str(EXAMPLE))
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "nope" in out.stderr or "mars" in out.stderr


def test_status_with_the_control_plane_unreachable_claims_nothing(tmp_path):
    """No "epoch 0, nothing published", no configured primaries shown as current: the
    live state is unknown, and status says so (exit 1)."""
    from servers import free_port
    path = tmp_path / "resil.toml"
    path.write_text(EXAMPLE.read_text().replace(
        'url = "file:///var/lib/resil/state.json"', f'url = "redis://127.0.0.1:{free_port()}/0"'))
    out = resil("status", "--config", str(path))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "UNREACHABLE: the live state is unknown" in out.stdout
    assert "nothing published" not in out.stdout and "epoch 0" not in out.stdout
    assert "primary unknown (the configuration says beijing)" in out.stdout
    assert "weights:  unknown" in out.stdout
    report = json.loads(resil("status", "--config", str(path), "--json").stdout)
    assert report["control"]["reachable"] is False and report["control"]["epoch"] is None
    assert report["resources"]["orders-db"]["primary"] == {
        "unit": None, "endpoint": None, "configured": "beijing"}


def test_status_reports_a_corrupt_state_file(pair_config, tmp_path):
    (tmp_path / "state.json").write_text("{garbage")
    out = resil("status", "--config", str(pair_config))
    assert out.returncode == 1
    assert "problem:" in out.stdout and "not JSON" in out.stdout


def test_unknown_command_is_a_usage_error():
    out = resil("teleport")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_status_lists_live_agents_with_their_epoch(pair_config, publish, tmp_path):
    import os
    import time
    app = ("import pymysql, time\n"
           "c = pymysql.connect(host='orders-db', user='app', password='apppw')\n"
           "print('ready', flush=True)\n"
           "time.sleep(30)\n")
    (tmp_path / "app.py").write_text(app)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "resil-run"), "python", "app.py"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        publish(orders_db="b")
        deadline = time.monotonic() + 5
        while True:
            report = json.loads(resil("status", "--json", "--config", str(pair_config)).stdout)
            mine = [a for a in report["agents"] if a["id"].endswith(f":{proc.pid}")]
            if mine and mine[0]["epoch"] == 1:
                break
            assert time.monotonic() < deadline, report["agents"]
            time.sleep(0.1)
        assert mine[0]["live"] and mine[0]["unit"] == "a"
        assert mine[0]["admin"].startswith("127.0.0.1:")      # where its /healthz is
        assert mine[0]["in_flight"] == {"orders-db": 0, "cache": 0}
        text = resil("status", "--config", str(pair_config)).stdout
        assert "agents:   1 live" in text and "BEHIND" not in text
    finally:
        proc.terminate()
        proc.wait(10)
    # A dead process's heartbeat is cleaned up the next time agents are listed.
    report = json.loads(resil("status", "--json", "--config", str(pair_config)).stdout)
    assert not [a for a in report["agents"] if a["id"].endswith(f":{proc.pid}")]


def test_db_unlock_removes_a_stale_lock(pair_config):
    import time

    from resil.config import load_config
    from resil.control import open_control_plane
    from resil.state import ControlState, Lock
    config = load_config(pair_config, env={})
    plane = open_control_plane(config.control_url, config.topology, None)
    plane.publish(ControlState.initial(config.topology).evolve(
        locks={"orders-db": Lock("dead-switch", time.time(), "switch to b")}), issuer="t")
    # Without the admin credentials the servers cannot be asked: the lock stays.
    out = resil("db", "unlock", "orders-db", "--config", str(pair_config))
    assert out.returncode == 1 and "stays locked by dead-switch" in out.stderr, out.stderr
    # With them, the dead holder's lock is resolved: a is the one writable server.
    out = subprocess.run([RESIL, "db", "unlock", "orders-db", "--config", str(pair_config)],
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, **PASSWORDS})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "orphaned switch released: primary a" in out.stdout, out.stdout
    assert "orders-db" not in plane.load().state.locks
    out = resil("db", "unlock", "orders-db", "--config", str(pair_config))
    assert out.returncode == 0 and "is not locked" in out.stdout
    plane.publish(plane.load().state.evolve(
        locks={"orders-db": Lock("dead-switch", time.time(), "switch to b")}), issuer="t")
    out = resil("db", "unlock", "orders-db", "--force", "--config", str(pair_config))
    assert out.returncode == 0 and "unlocked orders-db (held by dead-switch" in out.stdout


def test_an_agent_takes_its_heartbeat_away_when_it_exits(pair_config, tmp_path):
    import os
    app = ("import pymysql, time\n"
           "pymysql.connect(host='orders-db', user='app', password='apppw')\n"
           "time.sleep(0.5)\n")
    (tmp_path / "app.py").write_text(app)
    agents_dir = tmp_path / "state.json.agents"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([str(Path(sys.executable).parent / "resil-run"), "python", "app.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert agents_dir.is_dir() and not list(agents_dir.glob("*.json"))


def test_a_malformed_control_url_is_a_configuration_error(write_config):
    bad = write_config(EXAMPLE.read_text().replace("file:///var/lib/resil/state.json",
                                                   "redis://h:6379/x"))
    out = resil("config", "check", str(bad))
    assert out.returncode == 2
    assert "control.url = 'redis://h:6379/x'" in out.stderr and "not a number" in out.stderr


def test_operator_flags_are_validated():
    """NaN waited for ever, 0 let two monitors act at once, -1 hot-looped."""
    for args, said in [
            (("monitor", "--lease-ttl", "0"), "above 0"),
            (("monitor", "--lease-ttl", "31"), "at most 30"),
            (("monitor", "--interval", "-1"), "above 0"),
            (("monitor", "--timeout", "inf"), "finite"),
            (("monitor", "--failures", "0"), "at least 1"),
            (("db", "switch", "db", "--to", "b", "--drain-timeout", "nan"), "finite"),
            (("db", "switch", "db", "--to", "b", "--catchup-timeout", "soon"), "not a number"),
            (("drill", "kill", "db", "--timeout", "0"), "above 0")]:
        out = resil(*args)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)


def test_a_switch_may_never_outlast_the_agents_hold(write_config):
    config = write_config("""
        unit = "a"
        [resources.db]
        kind = "mysql"
        primary = "a"
        lock_timeout = 3
        endpoints = { a = "127.0.0.1:1", b = "127.0.0.1:2" }
    """)
    out = resil("config", "check", str(config))
    assert out.returncode == 2 and out.stdout == "", out.stdout
    assert f"{config}: resources.db.lock_timeout = 3 s is not above the longest a switch " \
        "holds writes (4 s" in out.stderr, out.stderr
    out = resil("db", "switch", "db", "--to", "b", "--config", str(config))
    assert out.returncode == 1 and "could outlast the agents' hold" in out.stderr, out.stderr


def test_a_rehearsal_pause_counts_against_the_hold(write_config):
    config = write_config("""
        unit = "a"
        [resources.db]
        kind = "mysql"
        primary = "a"
        endpoints = { a = "127.0.0.1:1", b = "127.0.0.1:2" }
    """)
    out = resil("db", "switch", "db", "--to", "b", "--config", str(config),
                "--pause-after", "fence:2")
    assert out.returncode == 1, out.stderr
    assert "+ a 2 s pause (--pause-after) could outlast the agents' hold" in out.stderr
    out = resil("db", "switch", "db", "--to", "b", "--pause-after", "publish:1")
    assert out.returncode == 2 and "STEP one of lock, drain, fence" in out.stderr


def test_both_commands_say_their_version():
    import resil as package
    out = resil("--version")
    assert out.returncode == 0 and out.stdout == f"resil {package.__version__}\n", out
    run = subprocess.run([str(Path(sys.executable).parent / "resil-run"), "--version"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == f"resil-run {package.__version__}\n", run


def test_doctor_reads_the_servers_failover_settings(tmp_path, write_config):
    """With the admin password in the environment, doctor reads each database server:
    a semi-sync timeout shorter than a monitor's detection and failover is a problem
    (acknowledged writes could be lost), slow freeze detection a warning."""
    from servers import MariaDBPair
    from servers.config import resil_toml
    with MariaDBPair(tmp_path / "mysql", semi_sync=True) as pair:
        pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 1000")
        config = write_config(resil_toml((tmp_path / "state.json").as_uri(), mysql=pair))
        env = {**os.environ, **PASSWORDS}

        def doctor(without: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run([RESIL, "doctor", "--config", str(config), "--json"],
                                  capture_output=True, text=True, timeout=60,
                                  env={k: v for k, v in env.items() if k != without})
        out = doctor()
        assert out.returncode == 1, out.stdout + out.stderr
        report = json.loads(out.stdout)
        primary = f"127.0.0.1:{pair.primary.port}"
        assert report["problems"] == [
            f"orders-db: rpl_semi_sync_master_timeout = 1000 ms on {primary} is shorter "
            "than a default `resil monitor`'s worst-case detection and failover (about "
            "7.5 s): a primary cut off from its replica that long falls back to "
            "asynchronous replication, and writes it then acknowledges are lost if it "
            "dies. Raise it above 7500 ms"]
        replica = f"127.0.0.1:{pair.replica.port}"
        assert report["warnings"] == [
            f"orders-db {replica}: a frozen source is noticed only after 30.25 s "
            "(slave_net_timeout, MASTER_HEARTBEAT_PERIOD): set them as "
            "docs/operations/failover.md says for about 1 s"], report["warnings"]
        roles = {e["endpoint"]: e["role"] for e in report["servers"]}
        assert roles == {primary: "primary", replica: "replica"}

        pair.primary.root_sql("SET GLOBAL rpl_semi_sync_master_timeout = 30000")
        pair.replica.root_sql("STOP SLAVE; SET GLOBAL slave_net_timeout = 2; "
                              "CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD = 0.5; START SLAVE")
        out = doctor()
        assert out.returncode == 0, out.stdout
        assert json.loads(out.stdout)["warnings"] == []
        # Without the admin password the servers are not read, and that is said.
        out = doctor(without="RESIL_TEST_ADMIN_PW")
        report = json.loads(out.stdout)
        assert report["servers"][0]["checked"] is False
        assert "RESIL_TEST_ADMIN_PW" in report["servers"][0]["why"]
