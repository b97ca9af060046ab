"""Scrapy extensions: run records and locks, per-run stats dump, Prometheus metrics, progress."""
