"""The request log's filesystem full, with a real ``serve`` process: its log on a 2 MiB tmpfs,
its store (a ClickHouse server: the HTTP stand-in) down so nothing drains, load until the disk
is full.

- ``when_full: serve``: every request is still answered 200; ``/readyz`` says degraded, and
  why, with 200; ``/admin/telemetry`` counts every record that did not fit (``lost``), so
  ``written + lost`` is exactly the number of requests answered.
- ``when_full: reject``: once the log cannot be written, requests are answered 503
  ``request_log_full`` in OpenAI's error shape and ``/readyz`` answers 503 degraded; only the
  requests already in flight when the disk filled are served unlogged (counted in ``lost``).

Then the store comes back: the ingester drains the log and deletes what it inserted, and the
gateway recovers by itself (200 again, ``/readyz`` ready) — every logged record has exactly one
row, and no request has two. Needs root to mount the tmpfs; skipped, with the reason, without.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from gateway.config.telemetry import LogSettings
from gateway.telemetry.log import Checkpoint, LogReader, LogWriter, Position, WriterState
from gateway.telemetry.log.reserve import RESERVE_BYTES, RESERVE_NAME, free_bytes
from gateway.telemetry.log.writer import RETRY_S
from tests.support.gateway_process import Gateway, assert_exactly_once, write_config
from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import isolate_telemetry_data, tdb  # noqa: F401

THREADS = 4
PAD = 4000  # characters per prompt: ~4 KB records, so 2 MiB fill in a few hundred requests


def mount_tmpfs(path: Path, size: str) -> Path:
    """A real tmpfs of ``size`` at ``path`` (needs root; skips the test where it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return path


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MiB tmpfs for the request log."""
    mount = mount_tmpfs(tmp_path / "fs", "2m")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("policy", ["serve", "reject"])
def test_a_full_log_filesystem_per_policy_then_recovery(tmp_path, small_fs, standin, tdb, policy):
    dsn = standin.dsn(tdb)
    standin.stop()  # nothing drains: the log only grows
    config = write_config(tmp_path, dsn=dsn, telemetry=(
        f'  log: {{dir: "{small_fs}", segment_bytes: 65536, segment_age_s: 1, when_full: {policy}}}\n'))
    gw = Gateway(config, tmp_path / "data", tmp_path / "gw.log")
    try:
        load = Load([gw.url], threads=THREADS, pad=PAD)
        with load:
            wait_for(lambda: gw.stats()["lost"] > 0, timeout=120, what="the log's filesystem to fill up")
            if policy == "serve":
                full_at = load.count
                wait_for(lambda: load.count >= full_at + 50, timeout=60, what="50 more requests answered while full")
            else:
                wait_for(lambda: load.statuses[503] >= 20, timeout=60, what="requests refused while full")
        refused_directly = 0
        if policy == "reject":  # the refusal, in OpenAI's error shape
            r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": "Bearer sk-x"},
                           json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            refused_directly = 1
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error == {"message": error["message"], "type": "server_error", "param": None,
                             "code": "request_log_full"} and "full" in error["message"]
        stats = gw.stats()
        assert load.failed == 0
        assert stats["error"] and "ENOSPC" in stats["error"], stats
        # every request answered is counted: its record written, or lost
        assert stats["written"] + stats["lost"] == load.count + load.refused + refused_directly, (stats, load.statuses)
        code, body = gw.readyz()
        assert body["status"] == "degraded" and "ENOSPC" in body["reason"], body
        if policy == "serve":
            assert load.refused == 0 and code == 200
        else:
            assert code == 503 and set(load.statuses) == {200, 503}, load.statuses
            # served unlogged: only what was already in flight when the disk filled
            assert 1 <= load.count - stats["written"] <= THREADS, (stats, load.statuses)
        written = stats["written"]
        lost = stats["lost"]

        standin.start()  # same port: the ingester drains and deletes, the writer recovers
        wait_for(lambda: gw.readyz() == (200, {**gw.readyz()[1], "status": "ready"}), timeout=120,
                 what="/readyz ready again")
        after = Load([gw.url], threads=2, prefix=load.prefix + "-after")
        with after:
            wait_for(lambda: after.count >= 20, timeout=60, what="requests answered after the recovery")
        assert after.refused == 0 and after.failed == 0
        stats = gw.stats()
        assert stats["lost"] == lost and stats["written"] == written + after.count, stats

        assert_exactly_once(gw, after)  # every request answered after the recovery: one row
        rows = gw.rows(load.prefix)
        full_phase = {k: n for k, n in rows.items() if k in set(load.answered)}
        assert len(full_phase) == written, (len(full_phase), written)  # every record logged before: its row
        assert all(n == 1 for n in rows.values()), "a request with two rows"
        assert "loop error" not in gw.log.read_text()  # the ingester could always commit (its room reserve)
    finally:
        gw.stop()


def test_the_ingester_can_commit_on_a_disk_the_log_filled(small_fs):
    """The checkpoint shares the log's filesystem: the writer keeps a room reserve beside it, a
    checkpoint save on the full disk uses it, and the writer resumes only once the reserve is
    back in place and more room than it is free, so the room freed for commits stays theirs."""
    ingest = small_fs / ".ingest"
    writer = LogWriter(small_fs, LogSettings(segment_bytes=64 * 1024), writer_id="w", reserve_dir=ingest).open()
    try:
        assert (ingest / RESERVE_NAME).stat().st_size == RESERVE_BYTES  # made when the writer opened
        while writer.append(b"x" * 10_000):
            pass
        assert "ENOSPC" in (writer.degraded_reason() or "")
        writer.drain_retired()  # the upkeep thread closes filled segments within a tick: now, here
        checkpoint = Checkpoint(ingest / "checkpoint.json")
        assert checkpoint.keep_reserve()
        checkpoint.save({"w": WriterState(Position.origin())})  # the disk is full: the reserve makes room
        assert not (ingest / RESERVE_NAME).exists()

        reader = LogReader(small_fs)
        segments = reader.segments("w")
        for segment in segments[:2]:  # the ingester committed and deleted two segments (~120 KB)…
            assert reader.delete("w", segment)
        checkpoint.save({"w": WriterState(Position(segments[2], 0))})  # …and took its reserve back first
        assert (ingest / RESERVE_NAME).stat().st_size == RESERVE_BYTES
        writer.retry_after_failure(time.monotonic() + RETRY_S)  # past its retry time: room is what holds it
        assert writer.degraded_reason(), f"resumed with {free_bytes(small_fs)} bytes free"

        for segment in segments[2:5]:  # more room than twice the reserve: the writer resumes by itself
            assert reader.delete("w", segment)
        wait_for(lambda: writer.degraded_reason() is None, what="the writer to resume")
        assert writer.append(b"after") and (ingest / RESERVE_NAME).exists()
    finally:
        writer.close()
