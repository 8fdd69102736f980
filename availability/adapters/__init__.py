"""Adapters: the core's ports implemented with real libraries.

``calcom/`` speaks Cal.com's HTTP API (httpx) and reads its webhooks;
``stores/`` keeps buckets, versions and the call budget in memory (aiocache)
or in Redis (aiocache's ``RedisCache`` and redis-py).
"""
