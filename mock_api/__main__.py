"""``python -m mock_api``: serve the simulator until SIGINT or SIGTERM.

The first line on stdout is the base URL (useful with ``--port 0``). Then the crawler
settings that match this simulator (its URL, its time scale and rate limit), as
``NAME=value`` lines a shell or ``.env`` takes; ``--crawler-env FILE`` writes them to a file too.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import socket
import sys

from aiohttp import web

from .config import parse_config
from .server import MockApi


def _raise_fd_limit() -> None:
    # A thousand concurrent connections need more descriptors than some shells allow.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


async def serve(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    _raise_fd_limit()
    api = MockApi(config)
    # handler_cancellation: a client that gives up on a hanging or slow call
    # frees its handler, and an abandoned sync is not counted as synced.
    runner = web.AppRunner(api.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    site = web.SockSite(runner, sock, backlog=4096)
    await site.start()
    host, port = sock.getsockname()[:2]
    print(f"http://{host}:{port}", flush=True)
    faults = ", ".join(f"{name}={rate:g}" for name, rate in sorted(config.faults.items())) or "none"
    print(
        f"mock_api: time scale {config.time_scale}, rate {config.rate_limit}/{config.rate_window}s, "
        f"faults {faults}, {config.campaigns} campaigns/client, seed {config.seed}, quirks {config.quirks}, "
        f"accounts {', '.join(sorted(config.accounts))}",
        flush=True,
    )
    # The crawler's clock must run as fast as this one, or its windows and timeouts do not
    # match the platform it talks to.
    settings = {"AD_PLATFORM_API_URL": f"http://{host}:{port}", "ADCRAWLER_TIME_SCALE": repr(config.time_scale),
                "ADCRAWLER_RATE_LIMIT": str(config.rate_limit), "ADCRAWLER_RATE_WINDOW": repr(config.rate_window)}
    lines = [f"{name}={value}" for name, value in settings.items()]
    print("mock_api: crawler settings for this simulator (export them, or put them in .env):", flush=True)
    print("\n".join(lines), flush=True)
    if config.crawler_env:
        with open(config.crawler_env, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"mock_api: cannot listen: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
