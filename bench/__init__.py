"""Benchmarks, each run as a script (`python bench/NAME.py --help`), and the parts they share."""
