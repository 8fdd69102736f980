"""A real Redis database of the tests' own, emptied before and after each use."""

from __future__ import annotations

import redis

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def flushed_url(db: int) -> str:
    """A URL for database ``db`` of the machine's Redis, emptied now."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    try:
        client.flushdb()
    finally:
        client.close()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
