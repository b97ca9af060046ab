"""Project commands (override Scrapy's ``crawl`` to set the exit status)."""
