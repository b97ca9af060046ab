"""``scrapy clients``: the clients of the registry, with where their credentials live.

Prints one line per client: slug, platform client id, the names of the two
credential variables and whether both are set. Never a credential's value.

Settings: ADCRAWLER_CLIENTS_FILE.
"""

from __future__ import annotations

import argparse
import os

from decouple import UndefinedValueError, config
from scrapy.commands import ScrapyCommand

from adcrawler.clients import ClientConfigError, Registry
from adcrawler.config import value

from . import OperatorCommand, fail, table


class Command(OperatorCommand, ScrapyCommand):
    def short_desc(self) -> str:
        return "List the registered clients and whether their credentials are set (never the values)"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        try:
            registry = Registry.load(value(self.settings, "ADCRAWLER_CLIENTS_FILE") or None)
        except ClientConfigError as exc:
            fail(str(exc), self.settings)
        rows = [(c.slug, c.client_id, c.email_env, c.password_env,
                 "yes" if _is_set(c.email_env) and _is_set(c.password_env) else "no")
                for c in registry.clients.values()]
        print(table(("slug", "client id", "email variable", "password variable", "set"), rows))
        other = "any other slug is its own client id" if registry.allow_unregistered else "no other slug"
        print(f"{len(rows)} client(s) in {registry.path}; {other}")


def _is_set(name: str) -> bool:
    if os.environ.get(name):
        return True
    try:
        return bool(config(name))
    except UndefinedValueError:
        return False
