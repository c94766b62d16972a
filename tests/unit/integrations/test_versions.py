"""The versions the integrations gate on are those importlib.metadata reports, read
from the distributions' folder names instead of importlib.metadata's scan."""

from __future__ import annotations

import importlib.metadata
import sys

from resil.integrations import installed_version


def test_every_installed_distribution_has_the_version_importlib_metadata_reports():
    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    assert len(names) > 20
    for name in sorted(names):
        assert installed_version(name) == importlib.metadata.version(name), name


def test_names_compare_as_pep_503_says_and_the_first_on_the_path_wins(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Some_Lib-1.2.3.dist-info").mkdir(parents=True)
    (second / "some.lib-9.0.dist-info").mkdir(parents=True)
    (second / "Old_Egg-0.5-py3.11.egg-info").mkdir()
    (second / "unversioned.egg-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    assert installed_version("some-lib") == "1.2.3"
    assert installed_version("SOME__LIB") == "1.2.3"
    assert installed_version("old-egg") == "0.5"
    assert installed_version("unversioned") is None
    assert installed_version("absent") is None
