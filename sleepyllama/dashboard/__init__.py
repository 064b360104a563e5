"""sleepyllama-web: one page for every proxy on a host, its JSON, and its Prometheus metrics."""
