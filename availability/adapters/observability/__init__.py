"""Watching the service: Prometheus metrics, structured logs, optional OpenTelemetry tracing."""
