"""Benchmarks: a harness, one module per benchmark, results as JSON with gates and goals."""
