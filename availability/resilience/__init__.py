"""Policy around the upstream: decorators of the core's ``Upstream`` port.

Each module wraps an ``Upstream`` and is itself one, so ``server.py`` stacks
them (budget, retries, breaker, ...) and the core never knows. They depend on
:mod:`availability.core` only.
"""
