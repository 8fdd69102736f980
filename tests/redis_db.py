"""A real Redis database of the tests' own, emptied before and after each use."""

from __future__ import annotations

import socket
import subprocess
import time

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


class PrivateRedis:
    """A redis-server of the test's own on a fixed free port, to stop and start again."""

    def __init__(self, directory: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
            finally:
                client.close()
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None
