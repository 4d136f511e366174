"""What ``/metrics`` counts: delivery counters, delivery lag, labels a client cannot grow."""
