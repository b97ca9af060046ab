"""What the demo, the tests and the benchmarks share: running the real crawl
against the simulator. Not part of the crawler (not in the scrapyd egg)."""
