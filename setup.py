"""Packaging for scrapyd eggs (``scrapyd-deploy`` builds the egg from this file)."""

from setuptools import find_packages, setup

setup(
    name="adcrawler",
    version="1.0",
    packages=find_packages(include=["adcrawler", "adcrawler.*"]),
    package_data={"adcrawler": ["clients.toml"]},
    entry_points={"scrapy": ["settings = adcrawler.settings"]},
    zip_safe=False,
)
