"""Benchmarks: each module has a main() that prints a table and writes JSON under bench/results/."""
