"""scrapyd-deploy builds the egg with ``python setup.py bdist_egg``: the metadata is in pyproject.toml."""

from setuptools import setup

setup()
