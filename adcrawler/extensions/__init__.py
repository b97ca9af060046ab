"""Scrapy extensions: log redaction, per-run stats dump, Prometheus metrics."""
