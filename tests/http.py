"""A tiny blocking HTTP helper for tests that talk to the simulator directly."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> Reply:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


def basic(email: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def token(base_url: str, email: str = "admin@mixoads.com", password: str = "SuperSecret123!") -> str:
    reply = call("POST", base_url + "/auth/token", basic(email, password))
    assert reply.status == 200, reply.body
    return reply.json()["access_token"]


def bearer(tok: str, client: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tok}"}
    if client:
        headers["X-Client-ID"] = client
    return headers
