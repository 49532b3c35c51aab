"""What operators see: structured logs, Prometheus metrics, tracing, and the Workbench's record."""
