"""Adapters: the core's ports implemented with real libraries.

``calcom/`` speaks Cal.com's HTTP API (httpx) and reads its webhooks;
``stores/`` keeps buckets, versions and the call budget in memory (a bounded dict)
or in Redis (aiocache's ``RedisCache`` and redis-py).
"""
