"""The client registry: which clients exist, under which two names (a slug, the platform's client id),
and the names of the variables holding their credentials; either name is accepted wherever a person
types one, and an unknown name is an error."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from decouple import UndefinedValueError, config

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Client ids become stat keys and metric labels: no slashes, no spaces.
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
SHARD = "shard:"  # -a client=shard:...: a set of clients as the dispatcher sends it (Registry.shard)
PACKAGED = "adcrawler/clients.toml"
STAMP = "%Y%m%dT%H%M%SZ"  # how the dispatcher's job ids start: when the job was scheduled


def scheduled_at(job_id: str) -> float:
    """When a job the dispatcher named was scheduled (epoch seconds); 0 for any other id."""
    try:
        return datetime.strptime(job_id[:16], STAMP).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


class ClientConfigError(ValueError):
    """The registry or a client name is wrong; the message says how."""


@dataclass(frozen=True)
class Client:
    slug: str
    client_id: str
    email_env: str = "AD_PLATFORM_EMAIL"
    password_env: str = "AD_PLATFORM_PASSWORD"
    budget: str | None = None  # a group of clients the platform counts against one budget

    @property
    def name(self) -> str:
        """Both names, as a person reads them."""
        return self.slug if self.slug == self.client_id else f"{self.slug} ({self.client_id})"

    def credentials(self) -> tuple[str, str]:
        """Read (email, password) from the environment or ``.env``."""
        try:
            return config(self.email_env), config(self.password_env)
        except UndefinedValueError:
            raise ClientConfigError(f"client {self.slug!r}: set {self.email_env} and {self.password_env} "
                                    "in the environment or .env") from None


@dataclass
class Registry:
    clients: dict[str, Client] = field(default_factory=dict)
    allow_unregistered: bool = False
    path: str = PACKAGED

    @classmethod
    def load(cls, path: str | Path | None = None) -> Registry:
        """Read ``path``, or the packaged registry when no path is given."""
        if path:
            if not Path(path).exists():
                raise ClientConfigError(f"client registry {path} does not exist (ADCRAWLER_CLIENTS_FILE)")
            text = Path(path).read_text()
        else:
            path, text = PACKAGED, resources.files("adcrawler").joinpath("clients.toml").read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ClientConfigError(f"{path}: not valid TOML: {exc}") from None
        if set(data) - {"clients", "allow_unregistered"}:
            raise ClientConfigError(f"{path}: unknown keys {sorted(set(data) - {'clients', 'allow_unregistered'})}"
                                    " (expected [clients.<slug>] tables and allow_unregistered)")
        allow = data.get("allow_unregistered", False)
        if not isinstance(allow, bool):
            raise ClientConfigError(f"{path}: allow_unregistered must be true or false")
        clients: dict[str, Client] = {}
        for slug, entry in (data.get("clients") or {}).items():
            if not SLUG.match(slug) or not isinstance(entry, dict):
                raise ClientConfigError(f"{path}: bad client entry {slug!r}")
            unknown = set(entry) - {"client_id", "email_env", "password_env", "budget"}
            if unknown:
                raise ClientConfigError(f"{path}: client {slug!r} has unknown keys {sorted(unknown)}")
            client_id = str(entry.get("client_id", slug))
            if not CLIENT_ID.match(client_id):
                raise ClientConfigError(f"{path}: client {slug!r} has an invalid client_id")
            clients[slug] = Client(slug, client_id, **{k: str(entry[k]) for k in ("email_env", "password_env",
                                                                                  "budget") if k in entry})
        ids = [c.client_id for c in clients.values()]
        if len(set(ids)) != len(ids):
            raise ClientConfigError(f"{path}: two slugs map to the same client id")
        return cls(clients, allow, str(path))

    def find(self, name: str) -> Client:
        """The client a slug or a client id names; ClientConfigError lists the known names."""
        found = self.clients.get(name) or next((c for c in self.clients.values() if c.client_id == name), None)
        if found is not None:
            return found
        if self.allow_unregistered and SLUG.match(name):
            return Client(name, name)
        known = ", ".join(c.name for c in sorted(self.clients.values(), key=lambda c: c.slug)) or "none"
        raise ClientConfigError(f"client {name!r} is not in the registry {self.path} (known: {known}); "
                                "add it there, or name another registry with ADCRAWLER_CLIENTS_FILE")

    def select(self, argument: str) -> list[Client]:
        """Resolve ``-a client=...``: a name (slug or client id), a comma-separated list, ``all``, or a shard."""
        argument = (argument or "").strip()
        if not argument:
            raise ClientConfigError("no client given: use -a client=<name>, -a client=a,b or -a client=all")
        if argument.startswith(SHARD):
            chosen = self._unshard(argument)
            if not chosen:
                raise ClientConfigError("the shard holds no client")
            return chosen
        if argument == "all":
            if not self.clients:
                raise ClientConfigError("-a client=all needs clients in the registry file")
            return list(self.clients.values())
        found = (self.find(name.strip()) for name in argument.split(","))
        return list({client.client_id: client for client in found}.values())

    def digest(self) -> str:
        """Names everything that decides what each client is (slug, client id, credential variables,
        budget group): a shard is only read against a registry that says the same of every client."""
        lines = (f"{c.slug}\t{c.client_id}\t{c.email_env}\t{c.password_env}\t{c.budget or ''}"
                 for _, c in sorted(self.clients.items()))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]

    def shard(self, slugs: Iterable[str]) -> str:
        """``-a client=`` for many clients, compactly: ``shard:<digest>:<bits>``, one bit per registry
        client (sorted by slug), compressed."""
        chosen = set(slugs)
        if chosen - set(self.clients):
            unknown = sorted(chosen - set(self.clients))[:3]
            raise ClientConfigError(f"a shard holds registry clients only, not {unknown}")
        bits = sum(1 << i for i, slug in enumerate(sorted(self.clients)) if slug in chosen)
        packed = zlib.compress(bits.to_bytes((len(self.clients) + 7) // 8, "little"), 9)
        packed = base64.urlsafe_b64encode(packed).decode().rstrip("=")
        return f"{SHARD}{self.digest()}:{packed}"

    def _unshard(self, argument: str) -> list[Client]:
        digest, _, packed = argument[len(SHARD):].partition(":")
        if digest != self.digest():
            raise ClientConfigError(f"the shard was cut from another client registry than {self.path} "
                                    f"(registry {digest}, this one {self.digest()}): the dispatcher and the "
                                    "nodes must read the same ADCRAWLER_CLIENTS_FILE")
        try:
            bits = zlib.decompress(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
        except (ValueError, zlib.error):
            raise ClientConfigError("the shard argument is damaged (not what the dispatcher wrote)") from None
        if len(bits) != (len(self.clients) + 7) // 8:
            raise ClientConfigError("the shard argument is damaged (its size does not fit the registry)")
        chosen = int.from_bytes(bits, "little")
        return [self.clients[slug] for i, slug in enumerate(sorted(self.clients)) if chosen >> i & 1]
