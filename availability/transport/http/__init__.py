"""The HTTP port: Cal.com's webhook endpoint and the liveness/readiness probes."""
