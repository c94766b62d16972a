"""Configuration: valid files load into a frozen Config; bad input names source, key, value."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

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
     "resources.orders-db.endpoints.hangzhou", "malformed address"),
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
