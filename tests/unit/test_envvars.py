"""Settings are defined once: resil-run's flags and docs/configuration.md follow them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from resil import envvars
from resil.cli.run import parser
from resil.topology import KINDS, HttpPolicy

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_configuration_doc_is_generated_from_envvars():
    assert DOC.read_text() == envvars.markdown(), \
        "docs/configuration.md is stale: run `make docs`"


def test_every_setting_is_documented_and_flagged():
    doc = DOC.read_text()
    options = {a.option_strings[0] for a in parser()._actions if a.option_strings}
    for setting in envvars.SETTINGS:
        assert f"`{setting.env}`" in doc
        assert (setting.option in options) == setting.flag, setting.key
    for setting in envvars.RESOURCE_KEYS:
        assert f"`{setting.name}`" in doc


def test_resource_env_names():
    assert envvars.resource_env("orders-db", "primary") == "RESIL_RESOURCES_ORDERS_DB_PRIMARY"


_TYPES = {"str": str, "bool": bool, "float": float, "int": int, "list": tuple, "ints": tuple}


def test_every_declared_default_is_allowed_by_its_own_declaration():
    for setting in envvars.SETTINGS + envvars.RESOURCE_KEYS:
        defaults = [setting.default, *dict(setting.scheme_defaults).values()]
        for default in defaults:
            if default is None:
                assert setting.required or setting.kind in ("str", "endpoints"), setting.key
                continue
            assert type(default) is _TYPES[setting.kind], setting.key   # 5 is not 5.0
            if setting.choices:
                assert default in setting.choices, setting.key
            elif setting.kind == "ints":
                assert all(setting.admits(d) for d in default), setting.key
            elif setting.kind in ("float", "int"):
                assert setting.admits(default), setting.key
        if setting.minimum is not None or setting.maximum is not None:
            assert setting.kind in ("float", "int", "ints"), setting.key


def test_declared_kinds_and_http_keys_match_the_topology():
    assert envvars.resource_keys()["kind"].choices == KINDS
    http_keys = {s.name for s in envvars.RESOURCE_KEYS if s.kinds == ("http",)}
    assert http_keys == {f.name for f in dataclasses.fields(HttpPolicy)}


def test_allowed_values_in_words():
    by_key = envvars.by_key()
    assert by_key["control.heartbeat_interval"].allowed == "between 0.05 and 60 seconds"
    assert by_key["admin.target_utilization"].allowed == "more than 0 and at most 1"
    assert by_key["sessions.max_size"].allowed == \
        "a whole number between 1024 and 16777216 bytes"
    assert by_key["sessions.on_error"].allowed == "one of fail, degrade"
    assert by_key["unit"].allowed == ""
    assert not by_key["admin.capacity"].admits(float("nan"))
