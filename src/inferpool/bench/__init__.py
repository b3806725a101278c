"""Benchmarks: workloads, the load generator, side-by-side comparisons, virtual-time runs."""
