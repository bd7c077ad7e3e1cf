"""The durable request log against real failures: a writer process killed with ``kill -9`` in
the middle of appending loses no acknowledged record, and a log on a full filesystem (a real
1 MiB tmpfs) counts every lost record, reports why, and recovers by itself once the ingester
frees space."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.config.telemetry import LogSettings
from gateway.telemetry.log import LogReader, LogWriter, Position
from gateway.telemetry.log.framing import encode_frame
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]

# Appends numbered records as fast as it can and prints each index once append() acknowledged
# it. Every 97th record is 200 kB, so a kill can land in the middle of a write. It stops by
# itself when its log passes 256 MiB (the test kills it long before).
WRITER = r"""
import sys
from pathlib import Path
from gateway.config.telemetry import LogSettings
from gateway.telemetry.log import LogWriter
settings = LogSettings(fsync=sys.argv[2], segment_bytes=256 * 1024, segment_age_s=0.5, max_bytes=256 << 20)
writer = LogWriter(Path(sys.argv[1]), settings, writer_id="crash").open()
i = 0
while True:
    if not writer.append(b"%d:" % i + bytes([65 + i % 26]) * (200_000 if i % 97 == 96 else 50 + i % 500)):
        sys.exit(f"append {i} refused: {writer.stats()}")
    sys.stdout.write(f"{i}\n")
    sys.stdout.flush()
    i += 1
"""


def expected(i: int) -> bytes:
    return b"%d:" % i + bytes([65 + i % 26]) * (200_000 if i % 97 == 96 else 50 + i % 500)


def drain(reader: LogReader, position: Position, into: list[bytes]) -> Position:
    while True:
        got = reader.read("crash", position, max_records=500)
        into += [r.payload for r in got]
        if not got and got.next == position:
            return position
        position = got.next


@pytest.mark.parametrize(("fsync", "target"), [("never", 3000), ("interval", 3000), ("always", 500)])
def test_kill_9_loses_no_acknowledged_record(tmp_path, fsync, target):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), fsync], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    acked: list[int] = []
    listener = threading.Thread(target=lambda: acked.extend(int(line) for line in proc.stdout), daemon=True)
    listener.start()
    reader = LogReader(tmp_path)
    records: list[bytes] = []
    position = Position.origin()
    try:
        # tail the log while it is written (a record still being written is left for later)
        while len(acked) < target and proc.poll() is None:
            got = reader.read("crash", position, max_records=200)
            records += [r.payload for r in got]
            position = got.next
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        listener.join(10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert len(acked) >= target and acked == list(range(len(acked)))

    # the writer is dead: its last segment is final and read to the end, torn tail or not
    assert not reader.alive("crash")
    last = reader.segments("crash")[-1]
    assert reader.closed("crash", last)
    position = drain(reader, position, records)
    indices = [int(p.split(b":", 1)[0]) for p in records]
    # every acknowledged record, in order, once; at most one more (appended, killed before it said so)
    assert indices[:len(acked)] == acked and len(indices) - len(acked) in (0, 1)
    assert all(p == expected(i) for i, p in zip(indices, records))
    assert len(reader.segments("crash")) > 3  # the run rotated segments

    # a torn record at the end of the dead writer's segment is skipped and counted
    skipped = reader.stats()["skipped_bytes"]
    with open(tmp_path / "crash" / f"{last}.seg", "ab") as f:
        f.write(encode_frame(b"torn" * 100)[:150])
    assert drain(reader, position, records) != position and reader.stats()["skipped_bytes"] == skipped + 150
    assert len(records) == len(indices)
    # the ingester may delete every segment and then the folder
    for seg in reader.segments("crash"):
        assert reader.delete("crash", seg)
    assert reader.remove_writer("crash") and reader.writers() == []


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 1 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("policy", ["serve", "reject"])
def test_a_full_filesystem_counts_every_loss_and_recovers(tiny_fs, policy):
    settings = LogSettings(segment_bytes=256 * 1024, when_full=policy)  # max_bytes (1 GiB) is not what stops it
    reader = LogReader(tiny_fs)
    writer = LogWriter(tiny_fs, settings, writer_id="w").open()
    try:
        sent: list[tuple[bytes, bool]] = []
        for i in range(200):
            payload = b"%d:" % i + b"x" * 10_000
            sent.append((payload, writer.append(payload)))
            if not sent[-1][1]:
                break
        assert not sent[-1][1] and all(ok for _, ok in sent[:-1]) and len(sent) > 50
        reason = writer.degraded_reason()
        assert reason and "ENOSPC" in reason and writer.stats()["error"]
        assert writer.accepting is (policy == "serve")
        for i in range(5):  # still failing: every record counted
            payload = b"late %d" % i + b"y" * 10_000
            sent.append((payload, writer.append(payload)))
        lost = sum(1 for _, ok in sent if not ok)
        assert writer.stats()["lost"] == writer.stats()["lost_error"] == lost >= 1

        # the ingester reads and deletes what is closed: the writer opens a fresh segment by itself
        got: list[bytes] = []
        position = drain_writer(reader, Position.origin(), got)
        for seg in reader.segments("w")[:-1]:
            assert reader.delete("w", seg)
        wait_for(lambda: writer.degraded_reason() is None, what="the writer to recover")
        assert writer.accepting
        for i in range(10):
            payload = b"after %d" % i
            sent.append((payload, writer.append(payload)))
        assert all(ok for _, ok in sent[-10:])
        drain_writer(reader, position, got)
        assert got == [p for p, ok in sent if ok]  # every acknowledged record, nothing else
        assert writer.stats()["lost"] == lost
        assert reader.stats()["skipped_segments"] <= 1  # the segment a partial write ended, if any
    finally:
        writer.close()


def drain_writer(reader: LogReader, position: Position, into: list[bytes]) -> Position:
    while True:
        got = reader.read("w", position)
        into += [r.payload for r in got]
        if not got and got.next == position:
            return position
        position = got.next
