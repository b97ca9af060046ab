"""adcrawler: campaign performance data from an ad platform into SQLite or PostgreSQL, with Scrapy."""

import sys

# `python -m adcrawler.dispatch` and `python -m adcrawler.replay` were commands of an earlier version.
# Python imports this package before it looks for the module: say in one line what replaced them.
_MOVED = {"adcrawler.dispatch": "scrapy dispatch", "adcrawler.replay": "scrapy replay"}
_argv = getattr(sys, "orig_argv", [])
if "-m" in _argv[:-1] and _argv[_argv.index("-m") + 1] in _MOVED:
    print(f"adcrawler: python -m {_argv[_argv.index('-m') + 1]} is now `{_MOVED[_argv[_argv.index('-m') + 1]]}` "
          "(run it where scrapy.cfg is), with the same arguments", file=sys.stderr)
    sys.exit(2)
