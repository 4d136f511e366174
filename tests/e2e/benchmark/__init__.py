"""The benchmark and the soak script still run (correctness only, never timings)."""
