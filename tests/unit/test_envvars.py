"""Settings are defined once: resil-run's flags and docs/configuration.md follow them."""

from __future__ import annotations

from pathlib import Path

from resil import envvars
from resil.cli.run import parser

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
