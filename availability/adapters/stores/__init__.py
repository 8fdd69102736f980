"""Cache stores and call budgets, chosen by ``AVAILABILITY_CACHE_URL`` in :mod:`.backend`."""

from availability.adapters.stores.backend import CacheBackend, open_cache_backend

__all__ = ["CacheBackend", "open_cache_backend"]
