"""Downloader middlewares: the bearer token, and acting on the verdict on each answer.

The meta keys they share are declared in :mod:`adcrawler.meta`.
"""
