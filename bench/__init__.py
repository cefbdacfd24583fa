"""Benchmarks (`make bench`): steering iteration latency and control-plane throughput."""
