"""Benchmarks: what the product sustains on a machine (capacity, soak, detector cost, the
review loop) and the simulated city with its media servers. Never imported by the runtime;
the CLI reaches it."""
