"""The inherited style, fixed: one request at a time, a fixed interval between them.

    python -m bench.naive URL SCALE

What the inherited script becomes once paginated and paced the obvious way:
pages of 10, one request every 6.5 s (a 10-per-minute budget plus a safety
margin), a 10 s timeout and up to 3 retries with doubling backoff, sequential
syncs. Prints one JSON line: requests sent, campaigns synced, wall time.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request

INTERVAL, TIMEOUT, RETRIES = 6.5, 10.0, 3


def main(url: str, scale: float) -> None:
    began = time.monotonic()
    state = {"last": 0.0, "sent": 0}

    def call(method: str, path: str, headers: dict[str, str]) -> dict | None:
        delay = INTERVAL * scale
        for attempt in range(RETRIES + 1):
            pause = state["last"] + INTERVAL * scale - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            state["last"] = time.monotonic()
            state["sent"] += 1
            request = urllib.request.Request(url + path, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT * scale) as resp:
                    return json.load(resp)
            except (urllib.error.URLError, TimeoutError, OSError):
                if attempt == RETRIES:
                    return None
                time.sleep(delay)
                delay *= 2
        return None

    basic = base64.b64encode(b"admin@mixoads.com:SuperSecret123!").decode()
    token = call("POST", "/auth/token", {"Authorization": f"Basic {basic}"})["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Client-ID": "naive"}
    campaigns, page = [], 1
    while True:
        answer = call("GET", f"/api/campaigns?page={page}&limit=10", headers)
        if answer is None:
            break
        campaigns += answer["data"]
        if not answer["pagination"]["has_more"]:
            break
        page += 1
    synced = sum(call("POST", f"/api/campaigns/{c['id']}/sync", headers) is not None for c in campaigns)
    print(json.dumps({"requests": state["sent"] - 1, "synced": synced, "wall": time.monotonic() - began}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
