"""The project installs like a well-kept Scrapy project: from its lock, into an egg that holds the crawler."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata

from harness.runner import DEMO_EMAIL, DEMO_PASSWORD, ROOT


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


def test_requirements_txt_pins_the_crawlers_own_dependencies_as_the_lock_does():
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    locked = {_canonical(name): version for name, version in _locked().items()}
    assert pinned and all(locked[_canonical(name)] == version for name, version in pinned.items())
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {_canonical(pin.split("==")[0]) for pin in runtime} <= {_canonical(name) for name in pinned}
    assert not {"pytest", "scrapyd", "hypothesis"} & {_canonical(name) for name in pinned}  # the crawler's only


def test_a_virtualenv_from_requirements_txt_crawls_the_simulator(tmp_path, quiet_mock):
    """What scrapyd-deploy and hosted Scrapy do: install requirements.txt, run the crawl."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-r",
                              str(ROOT / "requirements.txt")], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADCRAWLER_", "AD_PLATFORM_", "VIRTUAL_ENV"))}
    env.update(AD_PLATFORM_API_URL=quiet_mock.url, AD_PLATFORM_EMAIL=DEMO_EMAIL, AD_PLATFORM_PASSWORD=DEMO_PASSWORD,
               ADCRAWLER_TIME_SCALE="0.01", ADCRAWLER_DATA_DIR=str(tmp_path / "data"),
               PATH=f"{venv / 'bin'}:{env['PATH']}")
    crawl = subprocess.run([str(venv / "bin/scrapy"), "crawl", "campaigns", "-a", "client=demo"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert crawl.returncode == 0, crawl.stderr[-3000:]
    assert crawl.stderr.splitlines()[-1].endswith("Sync complete: 1 client(s) succeeded")
