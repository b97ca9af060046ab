"""adcrawler: sync Ad Platform campaign data into SQLite or PostgreSQL with Scrapy."""
