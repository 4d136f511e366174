"""Several processes through a real Redis: outages, restarts, Sentinel failover, shards, prefixes, TLS, readiness."""
