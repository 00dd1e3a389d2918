"""Benchmarks that print throughput (molecules/s) and peak memory; run them on an idle machine."""
