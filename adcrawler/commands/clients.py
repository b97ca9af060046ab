"""``scrapy clients``: the registry's clients, both their names, and whether their credential
variables are set (never a credential's value)."""

from __future__ import annotations

import argparse

from decouple import config
from scrapy.commands import ScrapyCommand

from . import OperatorCommand, table


class Command(OperatorCommand, ScrapyCommand):
    def short_desc(self) -> str:
        return "List the registered clients and whether their credentials are set (never the values)"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        registry = self.registry()
        rows = [(c.slug, c.client_id, c.email_env, c.password_env,
                 "yes" if config(c.email_env, default="") and config(c.password_env, default="") else "no")
                for c in registry.clients.values()]
        print(table(("slug", "client id", "email variable", "password variable", "set"), rows))
        other = "any other slug is its own client id" if registry.allow_unregistered else "no other slug"
        print(f"{len(rows)} client(s) in {registry.path}; {other}")
