"""Configuration: valid files load into a frozen Config; bad input names source, key, value."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resil import envvars
from resil.config import load_config
from resil.errors import ConfigError

GOOD = """
unit = "beijing"
[control]
url = "file:///tmp/x/state.json"
[resources.orders-db]
kind = "mysql"
primary = "beijing"
endpoints = { beijing = "10.0.1.5:3306", hangzhou = "10.0.2.5:3306" }
aliases = ["orders-db", "mysql.internal:3306"]
[resources.cache]
kind = "redis"
primary = "hangzhou"
endpoints = { beijing = "10.0.1.6:6379", hangzhou = "10.0.2.6:6379" }
[resources.productservice]
kind = "http"
endpoints = { beijing = ["http://10.0.1.7:8000"], hangzhou = "http://10.0.2.7:8000/api/" }
[sessions]
resource = "cache"
"""


def test_good_config_loads_typed_and_frozen(write_config):
    config = load_config(write_config(GOOD), env={})
    assert config.unit == "beijing"
    assert config.topology.units == ("beijing", "hangzhou")
    db = config.resources["orders-db"]
    assert db.kind == "mysql" and db.primary == "beijing"
    assert str(db.endpoint_in("hangzhou")) == "10.0.2.5:3306"
    assert [str(a) for a in db.aliases] == ["orders-db", "mysql.internal:3306"]
    assert config.resources["productservice"].endpoint_in("hangzhou").url == \
        "http://10.0.2.7:8000/api"
    assert config.admin_listen == ("127.0.0.1", 9464)
    assert config.sessions_resource == "cache"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.unit = "hangzhou"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.resources["x"] = db  # type: ignore[index]


def test_default_admin_port_steps_aside_for_opentelemetrys_exporter(write_config):
    path = write_config(GOOD)
    beside = {"OTEL_METRICS_EXPORTER": "otlp, Prometheus"}
    assert load_config(path, env=beside).admin_listen == ("127.0.0.1", 9465)
    assert load_config(path, env={**beside, "OTEL_EXPORTER_PROMETHEUS_PORT": "9100"}) \
        .admin_listen == ("127.0.0.1", 9464)
    assert load_config(path, env={**beside, "RESIL_ADMIN_LISTEN": "127.0.0.1:9464"}) \
        .admin_listen == ("127.0.0.1", 9464)            # set on purpose: kept
    assert load_config(path, env={"OTEL_METRICS_EXPORTER": "otlp"}).admin_listen == \
        ("127.0.0.1", 9464)


def test_topology_matches_endpoints_and_aliases(write_config):
    topo = load_config(write_config(GOOD), env={}).topology
    assert topo.match("mysql", "10.0.2.5", 3306).name == "orders-db"
    assert topo.match("mysql", "ORDERS-DB", 3307).name == "orders-db"  # alias without port
    assert topo.match("mysql", "mysql.internal", 3306).name == "orders-db"
    assert topo.match("mysql", "mysql.internal", 3307) is None
    assert topo.match("redis", "10.0.2.5", 3306) is None               # kind must agree
    assert topo.match("mysql", "10.9.9.9", 3306) is None


def test_environment_overrides_file(write_config):
    env = {"RESIL_UNIT": "hangzhou", "RESIL_CONTROL_POLL_INTERVAL": "0.2",
           "RESIL_RESOURCES_ORDERS_DB_PRIMARY": "hangzhou",
           "RESIL_RESOURCES_CACHE_ENDPOINTS": "beijing=127.0.0.1:7001,hangzhou=127.0.0.1:7002",
           "RESIL_DISABLED_INTEGRATIONS": "redis, pymysql"}
    config = load_config(write_config(GOOD), env=env)
    assert config.unit == "hangzhou"
    assert config.poll_interval == 0.2
    assert config.resources["orders-db"].primary == "hangzhou"
    assert str(config.resources["cache"].endpoint_in("beijing")) == "127.0.0.1:7001"
    assert config.disabled_integrations == {"redis", "pymysql"}


def test_path_from_resil_config_env(write_config, tmp_path, monkeypatch):
    path = write_config(GOOD, name="other.toml")
    monkeypatch.chdir(tmp_path)
    assert load_config(env={"RESIL_CONFIG": str(path)}).path == path.resolve()


def test_default_control_url_is_beside_the_file(write_config, tmp_path):
    config = load_config(write_config(GOOD.replace('url = "file:///tmp/x/state.json"', "")),
                         env={})
    assert config.control_url == (tmp_path / "resil-state.json").resolve().as_uri()


BAD = [
    # (edit of GOOD, env, expected key, expected words in the message)
    (('unit = "beijing"', 'colour = 1\nunit = "beijing"'), {}, "colour", "unknown key"),
    (('url = "file', 'urll = "file'), {}, "control.urll", "unknown key"),
    (('kind = "redis"', 'kind = "redis"\nport = 1'), {}, "resources.cache.port", "unknown key"),
    (('unit = "beijing"', 'unit = 3'), {}, "unit", "expected a string"),
    (('unit = "beijing"', ''), {}, "unit", "required"),
    (('unit = "beijing"', 'unit = "shanghai"'), {}, "unit", "not one of the units"),
    (('unit = "beijing"', 'unit = "beijing"\nunits = ["beijing"]'), {},
     "resources.orders-db.endpoints.hangzhou", "undeclared unit"),
    (('hangzhou = "10.0.2.5:3306"', 'hangzhou = "10.0.2.5"'), {},
     "resources.orders-db.endpoints.hangzhou", "malformed address"),
    (('hangzhou = "10.0.2.5:3306"', 'hangzhou = "10.0.2.5:99999"'), {},
     "resources.orders-db.endpoints.hangzhou", "port 99999 out of range: expected 1 to 65535"),
    (('hangzhou = "10.0.2.5:3306"', 'hangzhou = "10.0.1.5:3306"'), {},
     "resources.orders-db.endpoints.hangzhou", "the same endpoint as unit 'beijing'"),
    (('url = "file', 'urll = "file'), {}, "control.urll", "did you mean 'url'?"),
    (('kind = "redis"', 'kind = "redis"\nlock_timeot = 6'), {}, "resources.cache.lock_timeot",
     "unknown key; did you mean 'lock_timeout'?"),
    (('unit = "beijing"', 'unti = "beijing"\nunit = "beijing"'), {}, "unti",
     "unknown key; did you mean 'unit'?"),
    ((None, None), {"RESIL_ADMIN_LISTEN": "127.0.0.1:70000"}, "admin.listen",
     "port 70000 out of range: expected 0 to 65535"),
    (('hangzhou = "10.0.2.5:3306"', 'hangzhou = "bad host!:3306"'), {},
     "resources.orders-db.endpoints.hangzhou", "malformed address"),
    (('["http://10.0.1.7:8000"]', '["ftp://10.0.1.7"]'), {},
     "resources.productservice.endpoints.beijing", "malformed URL"),
    (('kind = "mysql"', 'kind = "postgres"'), {}, "resources.orders-db.kind", "expected one of"),
    (('primary = "beijing"', 'primary = "shanghai"'), {}, "resources.orders-db.primary",
     "no endpoint in that unit"),
    (('primary = "beijing"', ''), {}, "resources.orders-db.primary", "required"),
    (('"mysql.internal:3306"]', '"10.0.1.6:6379"]'), {}, "resources.cache",
     "already belongs"),
    (('resource = "cache"', 'resource = "orders-db"'), {}, "sessions.resource", "kind redis"),
    ((None, None), {"RESIL_CONTROL_POLL_INTERVAL": "fast"}, "control.poll_interval",
     "expected a number"),
    ((None, None), {"RESIL_DISABLED": "maybe"}, "disabled", "expected 1/0"),
    ((None, None), {"RESIL_CONTROL_URL": "http://x"}, "control.url", "unsupported scheme"),
    ((None, None), {"RESIL_ADMIN_LISTEN": "localhost"}, "admin.listen", "malformed address"),
    ((None, None), {"RESIL_CONTROL_SIGNING_KEY_ENV": "NOPE_KEY"}, "control.signing_key_env",
     "not set"),
    (('hangzhou = "http://10.0.2.7:8000/api/" }', 'hangzhou = "http://10.0.2.7:8000" }\n'
      'retries = 2.5'), {}, "resources.productservice.retries", "whole number"),
    (('hangzhou = "http://10.0.2.7:8000/api/" }', 'hangzhou = "http://10.0.2.7:8000" }\n'
      'retry_statuses = [404]'), {}, "resources.productservice.retry_statuses", "5xx"),
    (('hangzhou = "http://10.0.2.7:8000/api/" }', 'hangzhou = "http://10.0.2.7:8000" }\n'
      'health_path = "healthz"'), {}, "resources.productservice.health_path", "start with /"),
    (('kind = "redis"', 'kind = "redis"\nretries = 1'), {}, "resources.cache.retries",
     "only for http"),
    ((None, None), {"RESIL_RESOURCES_PRODUCTSERVICE_PANIC_THRESHOLD": "150"},
     "resources.productservice.panic_threshold", "between 0 and 100"),
    (('[sessions]', '[routing]\nkey = "body:user"\n[sessions]'), {}, "routing.key",
     "header:NAME"),
    (('[sessions]', '[routing]\nwrong_unit = "forward"\n[sessions]'), {},
     "routing.forward_to", "required"),
    (('[sessions]', '[routing]\nwrong_unit = "forward"\nforward_to = "cache"\n[sessions]'), {},
     "routing.forward_to", "kind http"),
]


@pytest.mark.parametrize("edit,env,key,words", BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_config_names_the_key(write_config, edit, env, key, words):
    text = GOOD if edit[0] is None else GOOD.replace(edit[0], edit[1], 1)
    assert text != GOOD or edit[0] is None
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    err = info.value
    assert err.key == key
    assert words in str(err)
    assert key in str(err)
    if env:
        assert "environment variable RESIL_" in err.source
    else:
        assert err.source == str(path)


def test_http_policy_and_routing_keys(write_config):
    text = GOOD.replace('hangzhou = "http://10.0.2.7:8000/api/" }',
                        'hangzhou = "http://10.0.2.7:8000" }\nretries = 1\n'
                        'retry_statuses = [503]\neject_time = 2\nhealth_path = "/healthz"')
    text += '[routing]\nkey = "header:X-User-Id"\nwrong_unit = "forward"\n' \
        'forward_to = "productservice"\n'
    config = load_config(write_config(text), env={"RESIL_RESOURCES_PRODUCTSERVICE_RETRIES": "3"})
    policy = config.resources["productservice"].http
    assert (policy.retries, policy.retry_statuses, policy.eject_time, policy.health_path) == \
        (3, frozenset({503}), 2.0, "/healthz")
    assert config.routing_key == ("header", "X-User-Id")
    assert (config.wrong_unit, config.forward_to) == ("forward", "productservice")
    assert config.topology.match("http", "productservice", 80).name == "productservice", \
        "an http resource is reachable by its name"
    assert load_config(write_config(GOOD), env={}).routing_key is None


def test_bad_value_is_shown(write_config):
    with pytest.raises(ConfigError, match=r"'10\.0\.2\.5'"):
        load_config(write_config(GOOD.replace('"10.0.2.5:3306"', '"10.0.2.5"')), env={})


def test_missing_unreadable_and_invalid_files(tmp_path, write_config):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_config("unit = \n"), env={})
    path = write_config(GOOD)
    path.chmod(0)
    if os.geteuid() == 0:           # root reads anything: use a directory instead
        path = tmp_path
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path, env={})
    assert info.value.source == str(path)


def test_design_example_is_accepted():
    example = Path(__file__).parents[2] / "examples" / "design-example.toml"
    config = load_config(example, env={})
    assert set(config.resources) == {"orders-db", "cache", "productservice"}


# ------------------------------------------------------------ every setting declared once
#
# Defaults and ranges live only in resil.envvars. These tests change a declaration and
# check that the Config follows: a default or a range written again anywhere else (in
# config.py, or as a dataclass default in topology.py) makes them fail.

MINIMAL = """
unit = "a"
[resources.db]
kind = "mysql"
endpoints = { a = "10.0.0.1:3306" }
[resources.cache]
kind = "redis"
endpoints = { a = "10.0.0.3:6379" }
[resources.web]
kind = "http"
endpoints = { a = "http://10.0.0.2" }
"""
SIGNING_ENV = {"TEST_SIGNING_KEY": "k"}

#: Where each top-level key lands in Config (keys whose default is computed are apart).
READ = {
    "disabled": lambda c: c.disabled,
    "disabled_integrations": lambda c: c.disabled_integrations,
    "log_level": lambda c: c.log_level,
    "log_format": lambda c: c.log_format,
    "control.signing_key_env": lambda c: c.signing_key_env,
    "control.poll_interval": lambda c: c.poll_interval,
    "control.heartbeat_interval": lambda c: c.heartbeat_interval,
    "admin.listen": lambda c: "%s:%d" % c.admin_listen,
    "admin.drain_period": lambda c: c.drain_period,
    "admin.ready_requires_primary": lambda c: c.ready_requires_primary,
    "admin.capacity": lambda c: c.capacity,
    "admin.target_utilization": lambda c: c.target_utilization,
    "sessions.resource": lambda c: c.sessions_resource,
    "sessions.on_error": lambda c: c.sessions_on_error,
    "sessions.max_size": lambda c: c.sessions_max_size,
    "sessions.replica_wait": lambda c: c.sessions_replica_wait,
    "routing.key": lambda c: ":".join(c.routing_key or ()),
    "routing.wrong_unit": lambda c: c.wrong_unit,
    "routing.forward_to": lambda c: c.forward_to,
    "scaling.min": lambda c: c.scaling.defaults.minimum,
    "scaling.max": lambda c: c.scaling.defaults.maximum,
    "scaling.target_utilization": lambda c: c.scaling.defaults.target_utilization,
    "scaling.startup_time": lambda c: c.scaling.defaults.startup_time,
    "scaling.predictive": lambda c: c.scaling.defaults.predictive,
    "scaling.horizon": lambda c: c.scaling.defaults.horizon,
    "scaling.unit_loss_reserve": lambda c: c.scaling.defaults.unit_loss_reserve,
    "scaling.reserve_fraction": lambda c: c.scaling.defaults.reserve_fraction,
    "scaling.interval": lambda c: c.scaling.interval,
    "scaling.history_days": lambda c: c.scaling.history_days,
    "scaling.history_series": lambda c: c.scaling.history_series,
}
COMPUTED = {"unit", "units", "control.url",   # required, or derived from other keys
            "control.previous_signing_keys_env",     # the keys it names are kept
            "service"}                               # OTel's name, else "default"
COMPUTED_RESOURCE_KEYS = {"kind", "endpoints", "primary"}
#: No alias by default: any other default would give every resource the same address.
UNCHANGEABLE_RESOURCE_KEYS = {"aliases"}
#: A valid value other than the default, where the kind alone does not give one.
ALTERNATIVE = {"admin.listen": "127.0.0.2:1", "routing.key": "header:X-User",
               "routing.forward_to": "web", "sessions.resource": "cache",
               "control.signing_key_env": "TEST_SIGNING_KEY", "health_path": "/up",
               "routing.wrong_unit": "allow",   # "forward" needs forward_to too
               "scaling.min": 2}                # min 100000 would be above max


#: What a bound must come with to be valid: min may reach its bound only under a max as high.
ALONGSIDE = {"scaling.min": {"RESIL_SCALING_MAX": "100000"}}


def _alternative(setting: envvars.Setting) -> object:
    """A value ``setting`` admits that differs from its declared default."""
    if setting.key in ALTERNATIVE:
        return ALTERNATIVE[setting.key]
    if setting.choices:
        return next(c for c in setting.choices if c != setting.default)
    if setting.kind == "bool":
        return not setting.default
    if setting.kind == "list":
        return ("other-host",)
    if setting.kind == "str":
        return "someone"
    if setting.kind == "ints":
        return (int(setting.minimum),)
    value = setting.maximum if setting.maximum != setting.default else setting.minimum
    value = int(value) if setting.kind == "int" else float(value)
    assert value != setting.default and setting.admits(value), setting.key
    return value


def _same(value: object) -> object:
    """Compare lists, sets and tuples of any items by their text, in order."""
    if isinstance(value, (frozenset, set)):
        value = sorted(value)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return value


def _resource_value(config, setting: envvars.Setting) -> object:
    resource = config.resources["web" if "http" in setting.kinds else "db"]
    holder = resource.http if hasattr(resource.http, setting.name) else resource
    return getattr(holder, setting.name)


def test_every_setting_is_read_or_known_to_be_computed():
    assert set(READ) | COMPUTED == set(envvars.by_key())
    assert set(READ).isdisjoint(COMPUTED)


@pytest.mark.parametrize("key", sorted(READ))
def test_a_top_level_default_comes_from_its_declaration(write_config, monkeypatch, key):
    path = write_config(MINIMAL)
    setting = envvars.by_key()[key]
    declared = setting.default_for("file")
    assert _same(READ[key](load_config(path, env=SIGNING_ENV))) == _same(declared)
    other = _alternative(setting)
    changed = dataclasses.replace(setting, default=other, scheme_defaults=())
    monkeypatch.setattr(envvars, "SETTINGS",
                        tuple(changed if s.key == key else s for s in envvars.SETTINGS))
    assert _same(READ[key](load_config(path, env=SIGNING_ENV))) == _same(other), \
        f"{key}: the config does not follow its declaration (a default written twice?)"


@pytest.mark.parametrize("name", sorted(set(envvars.resource_keys()) - COMPUTED_RESOURCE_KEYS
                                         - UNCHANGEABLE_RESOURCE_KEYS))
def test_a_resource_default_comes_from_its_declaration(write_config, monkeypatch, name):
    path = write_config(MINIMAL)
    setting = envvars.resource_keys()[name]
    assert _same(_resource_value(load_config(path, env={}), setting)) == _same(setting.default)
    other = _alternative(setting)
    changed = dataclasses.replace(setting, default=other)
    monkeypatch.setattr(envvars, "RESOURCE_KEYS",
                        tuple(changed if s.name == name else s for s in envvars.RESOURCE_KEYS))
    assert _same(_resource_value(load_config(path, env={}), setting)) == _same(other), \
        f"{name}: the config does not follow its declaration (a default written twice?)"


def test_poll_interval_default_depends_on_the_control_plane(write_config):
    setting = envvars.by_key()["control.poll_interval"]
    path = write_config(MINIMAL)
    assert load_config(path, env={}).poll_interval == setting.default_for("file") \
        != setting.default
    redis = load_config(path, env={setting.env.replace("POLL_INTERVAL", "URL"):
                                   "redis://10.0.0.3:6379/0"})
    assert redis.poll_interval == setting.default == setting.default_for("redis")


def test_dataclass_defaults_follow_the_declarations():
    """topology's Resource and HttpPolicy defaults are computed at import: change every
    declared default in a fresh interpreter, then import topology."""
    alternatives = {s.name: _alternative(s) for s in envvars.RESOURCE_KEYS
                    if s.name not in COMPUTED_RESOURCE_KEYS | UNCHANGEABLE_RESOURCE_KEYS}
    code = textwrap.dedent(f"""
        import dataclasses, json
        from resil import envvars
        alt = {alternatives!r}
        envvars.RESOURCE_KEYS = tuple(
            dataclasses.replace(s, default=alt[s.name]) if s.name in alt else s
            for s in envvars.RESOURCE_KEYS)
        from resil.topology import HttpPolicy, Resource
        policy = dataclasses.asdict(HttpPolicy())
        resource = {{f.name: f.default for f in dataclasses.fields(Resource)}}
        out = {{n: policy[n] if n in policy else resource[n] for n in alt}}
        print(json.dumps(out, default=sorted))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert {n: _same(v) for n, v in json.loads(done.stdout).items()} == \
        {n: _same(v) for n, v in alternatives.items()}


def _ranged() -> list[tuple[str, envvars.Setting]]:
    """(dotted key for messages, setting) of every declared range, resources included."""
    found = [(s.key, s) for s in envvars.SETTINGS]
    found += [(f"resources.{'web' if 'http' in s.kinds else 'db'}.{s.name}", s)
              for s in envvars.RESOURCE_KEYS]
    return [(k, s) for k, s in found if s.minimum is not None or s.maximum is not None]


def _env_var(key: str, setting: envvars.Setting) -> str:
    if key.startswith("resources."):
        return envvars.resource_env(key.split(".")[1], setting.name)
    return setting.env


def _outside(setting: envvars.Setting) -> list[float]:
    """Values just outside the declared range (and a fraction, for a whole number)."""
    step = 1 if setting.kind in ("int", "ints") else 0.001
    values = [setting.maximum + step]
    values.append(setting.minimum if setting.exclusive_minimum else setting.minimum - step)
    if setting.kind == "int":
        values.append(setting.minimum + 0.5)
    return values


@pytest.mark.parametrize("key,setting", _ranged(), ids=[k for k, _ in _ranged()])
def test_a_value_just_outside_a_declared_range_is_refused(write_config, key, setting):
    path = write_config(MINIMAL)
    var = _env_var(key, setting)
    for value in _outside(setting):
        text = str(int(value)) if setting.kind == "ints" else repr(value)
        with pytest.raises(ConfigError) as info:
            load_config(path, env={var: text})
        assert info.value.key == key and key in str(info.value), (key, value)
        assert info.value.source == f"environment variable {var}"
        assert setting.allowed in str(info.value)
    inside = [setting.maximum] + ([] if setting.exclusive_minimum else [setting.minimum])
    for value in inside:
        text = str(int(value)) if setting.kind in ("int", "ints") else repr(value)
        # the bounds themselves are accepted (with what they must be checked against)
        load_config(path, env={var: text, **ALONGSIDE.get(key, {})})


@pytest.mark.parametrize("key", [s.key for s in envvars.SETTINGS if s.choices])
def test_only_declared_choices_are_accepted(write_config, key):
    setting = envvars.by_key()[key]
    path = write_config(MINIMAL)
    with pytest.raises(ConfigError, match=f"{key} = 'nonsense': expected one of"):
        load_config(path, env={setting.env: "nonsense"})
    for choice in setting.choices:
        config = load_config(path, env={setting.env: choice.swapcase(), "RESIL_ROUTING_"
                                        "FORWARD_TO": "web"})
        assert READ[key](config) == choice      # the declared spelling, whatever the case


@pytest.mark.parametrize("setting,env,expected", [
    ("", {}, "default"),
    ("", {"OTEL_SERVICE_NAME": "checkout"}, "checkout"),          # OTel's name when set
    ("", {"OTEL_SERVICE_NAME": "  my shop "}, "my_shop"),         # made one word
    ('service = "orders"', {"OTEL_SERVICE_NAME": "checkout"}, "orders"),  # ours first
    ("", {"RESIL_SERVICE": "orders"}, "orders"),
])
def test_the_service_name(write_config, setting, env, expected):
    path = write_config(setting + "\n" + MINIMAL)
    assert load_config(path, env={**SIGNING_ENV, **env}).service == expected


def test_a_service_name_with_a_space_is_refused(write_config):
    path = write_config('service = "my shop"\n' + MINIMAL)
    with pytest.raises(ConfigError, match="service.*one word"):
        load_config(path, env=SIGNING_ENV)


@pytest.mark.parametrize("var,message", [
    ("RESIL_UNTI", "did you mean RESIL_UNIT?"),
    ("RESIL_RESOURCES_DB_PRIMRAY", "did you mean RESIL_RESOURCES_DB_PRIMARY?"),
    ("RESIL_RESOURCES_NOPE_PRIMARY", "no resource of the file is named so (its resources: "
                                     "db, cache, web"),
    ("RESIL_RESOURCES_DB_ZZZ", "[resources.db] has no key 'zzz'"),
    ("RESIL_CONTROL_ULR", "did you mean RESIL_CONTROL_URL?"),
    ("RESIL_ADMIN_PORT", "not a resil setting"),
])
def test_a_misspelt_variable_is_an_error(write_config, var, message):
    path = write_config(MINIMAL)
    with pytest.raises(ConfigError, match=f"environment: {var}: not a resil setting") as exc:
        load_config(path, env={**SIGNING_ENV, var: "west"})
    assert message in str(exc.value) and "west" not in str(exc.value)   # value not shown


def test_other_resil_variables_are_left_alone(write_config, caplog):
    """A secret a *_env key names, and a name that is not a setting's look-alike (another
    tool's): accepted; the second with a warning."""
    import logging
    path = write_config(MINIMAL + '[control]\nsigning_key_env = "RESIL_SIGNING_KEY"\n')
    with caplog.at_level(logging.WARNING, logger="resil"):
        config = load_config(path, env={"RESIL_SIGNING_KEY": "k", "RESIL_DEPLOY_TOKEN": "x"})
    assert config.signing_key == b"k"
    assert "RESIL_DEPLOY_TOKEN is not a resil setting: ignored" in caplog.text
    assert "RESIL_SIGNING_KEY" not in caplog.text


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "resil.toml"
    path.write_bytes(b'unit = "b\xe9ijing"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, env={})


def test_a_missing_file_says_how_to_name_it(tmp_path):
    with pytest.raises(ConfigError, match="resil config check PATH.*RESIL_CONFIG"):
        load_config(tmp_path / "nope.toml", env={})
