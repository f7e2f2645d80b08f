"""The development harness: a local control plane, Prometheus, PostgreSQL, load and the demo."""
