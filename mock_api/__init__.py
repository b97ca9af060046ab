"""Ad Platform API simulator used by adcrawler's demo, tests and benchmarks."""
