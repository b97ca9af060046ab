"""``scrapy settings``, seeing the settings as a crawl would: checked and resolved.

``scrapy settings -s ADCRAWLER_CONCURRENT_REQUESTS=64 --get CONCURRENT_REQUESTS``
prints 64, as the crawl would use it.
"""

from __future__ import annotations

import argparse

from scrapy.commands.settings import Command as ScrapySettings

from . import prepare


class Command(ScrapySettings):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        prepare(self.settings, log=False)
