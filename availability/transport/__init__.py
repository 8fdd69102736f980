"""Transports: how callers reach the core. ``grpc/`` serves the contract in
``protos/``; ``http/`` serves Cal.com's webhook and the orchestrator's probes."""
