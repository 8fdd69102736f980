"""Redis for the tests: one private ``redis-server`` per test session, never the user's.

Started on first use, on a free loopback port, in a temporary directory,
without persistence, and stopped when the session ends; every test that
needs Redis gets a database of it, emptied before use. No test connects to
a Redis it did not start (a developer's own Redis is theirs). Tests that stop,
freeze or partition Redis start their own :class:`~tests.helpers.replicas.RedisServer`.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time

import redis

from tests.helpers.replicas import free_port

__all__ = ["MISSING_REDIS", "flushed_url", "redis_server_binary"]

MISSING_REDIS = (
    "redis-server not found on PATH: the tests start their own Redis. Install it "
    "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)."
)


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class _SessionRedis:
    """The session's server: started on first use, stopped at exit."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._port = 0

    def port(self) -> int:
        if self._process is not None:
            return self._port
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(MISSING_REDIS)
        self._folder = tempfile.TemporaryDirectory(prefix="availability-test-redis-")
        self._port = free_port()
        self._process = subprocess.Popen(
            [binary, "--port", str(self._port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._folder.name, "--daemonize", "no",
             "--loglevel", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        atexit.register(self.stop)
        self._wait_for_pong()
        return self._port

    def _wait_for_pong(self) -> None:
        assert self._process is not None
        client = redis.Redis(host="127.0.0.1", port=self._port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the tests' redis-server did not start on {self._port}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._folder is not None:
            self._folder.cleanup()


_SESSION = _SessionRedis()


def flushed_url(db: int) -> str:
    """A URL for database ``db`` of the tests' own Redis, emptied now."""
    port = _SESSION.port()
    client = redis.Redis(host="127.0.0.1", port=port, db=db)
    try:
        client.flushdb()
    finally:
        client.close()
    return f"redis://127.0.0.1:{port}/{db}"
