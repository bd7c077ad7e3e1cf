"""A throw-away ``redis-server`` of a test's own, on a free loopback port, with no persistence.

Tests that stop Redis, or that write keys whose names the gateway fixes (limits, shared circuit
state), use one of these instead of the shared server on 6379, so that two runs of the suite on
one machine never see each other's keys.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from gateway.proxy.server import free_port
from tests.support.polling import wait_for


class RedisServer:
    """``start()`` / ``stop()`` a ``redis-server`` on ``port``; ``url`` points at its db 0."""

    def __init__(self, port: int | None = None, data_dir: str | None = None):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=2)

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.data_dir:
            args += ["--dir", self.data_dir]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.proc.poll() is None, f"redis-server exited with {self.proc.returncode}"
            try:
                with self.client() as c:
                    return bool(c.ping())
            except redis.RedisError:
                return False

        wait_for(answers, what="redis-server to start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
