"""The project installs like a well-kept Scrapy project: from its lock, into an egg that holds the crawler."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from harness.runner import ROOT


def _locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text()
    return {name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\", text, re.M)}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_virtualenv_is_exactly_the_lock():
    locked = {_canonical(name): version for name, version in _locked().items()}
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {name: installed.get(name) for name in locked} == locked  # every locked package, at its version
    extra = set(installed) - set(locked) - {"pip", "setuptools", "wheel", "adcrawler"}  # the project, if installed
    assert not extra, f"installed but not locked: {sorted(extra)}"


def test_every_dependency_of_pyproject_is_locked_at_its_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *(p for extra in project["optional-dependencies"].values() for p in extra)]
    locked = {_canonical(name): version for name, version in _locked().items()}
    for pin in pins:
        if pin.startswith("adcrawler["):
            continue
        name, version = pin.split("==")
        assert locked[_canonical(name)] == version, pin
    # The card's packages are all there.
    for name in ("scrapy", "itemadapter", "psycopg2-binary", "python-decouple", "pytest", "scrapyd", "scrapyd-client",
                 "prometheus-client"):
        assert _canonical(name) in locked, name
