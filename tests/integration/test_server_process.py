"""The foreground server process (``gateway.proxy.server.run_forever``), in a real subprocess."""

from __future__ import annotations

import subprocess
import sys

SERVE = """
import gc, os, signal
from aiohttp import web
from gateway.proxy.server import run_forever

async def report(app):
    print("threshold", *gc.get_threshold(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

app = web.Application()
app.on_startup.append(report)
run_forever(app, "127.0.0.1", 0)
"""


def test_a_serving_process_collects_cycles_only_when_they_pile_up():
    # Requests in flight would cross Python's default first threshold (700) many times a second;
    # the serving process raises it (and keeps the older generations' defaults).
    default = subprocess.run([sys.executable, "-c", "import gc; print(*gc.get_threshold())"], capture_output=True,
                             text=True, timeout=60).stdout.split()
    out = subprocess.run([sys.executable, "-c", SERVE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    threshold = next(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("threshold"))
    assert int(threshold[0]) >= 10_000 > int(default[0]) and threshold[1:] == default[1:]
