"""Benchmarks: `python -m qc2c.bench {codec,eval,max-batch}` (codec throughput, evaluation speed, largest batch)."""
