"""The durable request log in one process: framing, the writer (rotation, fsync policies, the
disk bound and both ``when_full`` policies, the folder lock), the reader (tailing an open
segment, skipping a torn tail of a closed one) and the checkpoint (resuming a pending batch).
Real files in a temp folder, the writer's real background thread; crash and disk-full tests
with real processes and a real tiny filesystem are in tests/integration/test_request_log_process.py."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.config.loader import ConfigError
from gateway.config.telemetry import LogSettings
from gateway.telemetry.log import Checkpoint, LogReader, LogWriter, Pending, Position, WriterState, batch_token, layout
from gateway.telemetry.log.framing import HEADER_SIZE, MAGIC, Stop, encode_frame, scan_frames
from tests.support.polling import stays, stops_growing, wait_for


def settings(**kw) -> LogSettings:
    return LogSettings(**kw)


def read_all(reader: LogReader, writer_id: str, position: Position | None = None, **kw) -> tuple[list[bytes], Position]:
    """Every record from ``position`` (the start) until the reader has nothing more; and where it stopped."""
    out: list[bytes] = []
    pos = position or Position.origin()
    while True:
        got = reader.read(writer_id, pos, **kw)
        out += [r.payload for r in got]
        if not got and got.next == pos:
            return out, pos
        pos = got.next


# --- framing --------------------------------------------------------------------------------
def test_frame_round_trip_and_layout():
    payloads = [b"", b"a", b"\x00" * 3, os.urandom(70_000)]
    data = b"".join(encode_frame(p) for p in payloads)
    frame = encode_frame(b"abc")
    assert frame[0] == MAGIC and struct.unpack("<II", frame[1:9]) == (3, zlib.crc32(b"abc")) and frame[9:] == b"abc"
    scan = scan_frames(data, base=100)
    assert [f[2] for f in scan.frames] == payloads and scan.stop is Stop.END and scan.end == 100 + len(data)
    assert scan.frames[1][:2] == (100 + HEADER_SIZE, 100 + 2 * HEADER_SIZE + 1)
    limited = scan_frames(data, max_records=2)
    assert len(limited.frames) == 2 and limited.stop is Stop.LIMIT and limited.end == 2 * HEADER_SIZE + 1


def test_frame_corruption_and_truncation_are_detected():
    good = encode_frame(b"first record")
    second = encode_frame(b"second record")
    flipped = bytearray(second)
    flipped[-1] ^= 0x01
    scan = scan_frames(good + bytes(flipped))
    assert [f[2] for f in scan.frames] == [b"first record"] and scan.stop is Stop.CORRUPT and scan.end == len(good)
    assert scan_frames(good + b"\x00" * 20).stop is Stop.CORRUPT  # zeros after a power loss: bad magic
    absurd = struct.pack("<BII", MAGIC, 1 << 31, 0)
    assert scan_frames(absurd).stop is Stop.CORRUPT
    for cut in (1, HEADER_SIZE - 1, HEADER_SIZE + 3):
        torn = scan_frames(good + second[:cut])
        assert torn.stop is Stop.INCOMPLETE and torn.end == len(good) and len(torn.frames) == 1
    assert scan_frames(second[:HEADER_SIZE + 2]).needed == len(second)
    with pytest.raises(ValueError):
        encode_frame(b"x" * ((64 << 20) + 1))


# --- settings -------------------------------------------------------------------------------
def test_log_settings_defaults_and_the_data_dir():
    log = parse_config("backends: {}\n").config.telemetry.log
    assert (log.fsync, log.fsync_interval_ms, log.segment_bytes, log.segment_age_s) == ("interval", 100, 16 << 20, 10)
    assert (log.max_bytes, log.when_full, log.lag_degraded_s) == (1 << 30, "serve", 30)
    assert log.resolved_dir(Path("/data")) == Path("/data/log")
    custom = parse_config("telemetry: {log: {dir: /var/log/gw, fsync: always, when_full: reject}}\n").config.telemetry.log
    assert custom.resolved_dir(Path("/data")) == Path("/var/log/gw") and custom.fsync == "always"
    with pytest.raises(ConfigError, match="telemetry.log.fsync"):
        parse_config("telemetry: {log: {fsync: sometimes}}\n")


# --- the writer ---------------------------------------------------------------------------
def test_append_then_read_back_in_order_across_size_rotation(tmp_path):
    reader = LogReader(tmp_path)
    with LogWriter(tmp_path, settings(segment_bytes=4096), writer_id="w1") as writer:
        payloads = [f"record {i} ".encode() * (1 + i % 40) for i in range(300)]
        assert all(writer.append(p) for p in payloads)
        assert writer.append(b"B" * 10_000)  # bigger than a segment: a segment of its own
        segments = reader.segments("w1")
        sizes = [reader.size("w1", s) for s in segments]
        assert len(segments) > 10 and max(sizes[:-2]) <= 4096 and 10_000 + HEADER_SIZE in sizes
        assert reader.alive("w1") and not reader.closed("w1", segments[-1]) and reader.closed("w1", segments[0])
        got, pos = read_all(reader, "w1", max_records=7)
        assert got == payloads + [b"B" * 10_000]
        assert writer.stats()["written"] == 301 and writer.stats()["lost"] == 0
        assert writer.stats()["bytes"] == sum(reader.size("w1", s) for s in segments)
    assert not reader.alive("w1") and reader.closed("w1", pos.segment)


def test_an_idle_writer_closes_its_segment_by_age(tmp_path):
    reader = LogReader(tmp_path)
    with LogWriter(tmp_path, settings(segment_age_s=0.3), writer_id="idle") as writer:
        writer.append(b"one")
        first = reader.segments("idle")[0]
        # no further append: the background thread closes it (a later, empty segment appears)
        wait_for(lambda: reader.closed("idle", first), what="the idle segment to close")
        assert reader.read("idle", Position(first, 0))[0].payload == b"one"
        got = reader.read("idle", Position(first, HEADER_SIZE + 3))
        assert not got and got.next.segment > first  # read to its end: the reader moves on
        assert reader.delete("idle", first) and first not in reader.segments("idle")
        # an empty segment never closes by age (nothing would be gained)
        assert stays(lambda: len(reader.segments("idle")) == 1, 0.6)
        assert writer.append(b"two")
        assert read_all(reader, "idle", got.next)[0] == [b"two"]


def test_fsync_always_syncs_every_append(tmp_path):
    with LogWriter(tmp_path, settings(fsync="always"), writer_id="a") as writer:
        for i in range(20):
            assert writer.append(b"r%d" % i)
        assert writer.fsyncs == 20


def test_fsync_interval_syncs_from_the_thread_only_when_written(tmp_path):
    with LogWriter(tmp_path, settings(fsync="interval", fsync_interval_ms=20), writer_id="i") as writer:
        assert writer.fsyncs == 0
        writer.append(b"x")
        wait_for(lambda: writer.fsyncs >= 1, what="the interval fsync")
        assert stops_growing(lambda: writer.fsyncs, 0.3)  # nothing written since: no more fsyncs
        writer.append(b"y")
        before = writer.fsyncs
        wait_for(lambda: writer.fsyncs > before, what="the next interval fsync")


def test_fsync_never_never_syncs(tmp_path):
    writer = LogWriter(tmp_path, settings(fsync="never", segment_bytes=4096, segment_age_s=0.2), writer_id="n").open()
    for _ in range(50):
        writer.append(b"z" * 500)
    wait_for(lambda: len(LogReader(tmp_path).segments("n")) >= 8, what="rotations")
    assert stays(lambda: writer.fsyncs == 0, 0.3)
    writer.close()
    assert writer.fsyncs == 0


@pytest.mark.parametrize("policy", ["serve", "reject"])
def test_the_bound_on_the_whole_root_and_the_full_policies(tmp_path, policy):
    cfg = settings(max_bytes=16_384, segment_bytes=4096, when_full=policy)
    reader = LogReader(tmp_path)
    writer = LogWriter(tmp_path, cfg, writer_id="bound").open()
    try:
        fits = 16_384 // (1000 + HEADER_SIZE)
        if policy == "reject":  # the serving process asks before it serves: nothing is lost
            served = 0
            while writer.accepting and served < 30:
                assert writer.append(b"p" * 1000)
                served += 1
            assert served == fits and writer.full and writer.stats()["lost"] == 0
        results = [writer.append(b"p" * 1000) for _ in range(30)]  # (under reject: requests already in flight)
        written = results.count(True)
        assert written == (fits if policy == "serve" else 0) and results[written:] == [False] * (30 - written)
        written = fits
        assert layout.root_bytes(tmp_path) <= 16_384
        stats = writer.stats()
        assert stats["lost"] == stats["lost_full"] == 30 - results.count(True) and stats["full"]
        assert "full" in writer.degraded_reason()
        assert writer.accepting is (policy == "serve")
        # a second writer on the same root counts the first one's bytes
        other = LogWriter(tmp_path, cfg, writer_id="other").open()
        assert not other.append(b"q" * 1000) and other.stats()["lost_full"] == 1
        other.close()
        # the ingester frees space: writing resumes by itself
        got, _ = read_all(reader, "bound")
        assert len(got) == written
        for seg in reader.segments("bound")[:-1]:
            assert reader.delete("bound", seg)
        assert not reader.delete("bound", reader.segments("bound")[-1])  # the open one is refused
        wait_for(lambda: writer.accepting and not writer.full, what="the writer to see the freed space")
        assert writer.degraded_reason() is None and writer.append(b"p" * 1000)
    finally:
        writer.close()


def test_the_folder_lock_and_removing_a_dead_writer(tmp_path):
    reader = LogReader(tmp_path)
    writer = LogWriter(tmp_path, settings(), writer_id="locked").open()
    with pytest.raises(RuntimeError, match="another live writer"):
        LogWriter(tmp_path, settings(), writer_id="locked").open()
    assert reader.writers() == ["locked"] and reader.alive("locked") and not reader.remove_writer("locked")
    writer.append(b"last")
    writer.close()
    assert not reader.alive("locked")
    seg = reader.segments("locked")[-1]
    assert reader.closed("locked", seg) and not reader.remove_writer("locked")  # a segment is left
    assert read_all(reader, "locked")[0] == [b"last"]
    # the same id again: continues the numbering (never rewrites a segment name)
    with LogWriter(tmp_path, settings(), writer_id="locked") as again:
        again.append(b"again")
        assert reader.segments("locked") == [seg, layout.segment_name(int(seg) + 1)]
        assert read_all(reader, "locked")[0] == [b"last", b"again"]
    for name in reader.segments("locked"):
        assert reader.delete("locked", name)
    assert reader.remove_writer("locked") and reader.writers() == []
    assert not writer.append(b"after close") and writer.stats()["lost"] == 1


def test_append_never_raises(tmp_path):
    with LogWriter(tmp_path, settings(), writer_id="safe") as writer:
        assert writer.append("not bytes") is False  # type: ignore[arg-type]
        assert writer.stats()["lost"] == 1
    unopened = LogWriter(tmp_path, settings(), writer_id="never-opened")
    assert unopened.append(b"x") is False and unopened.stats()["lost"] == 1


# --- the reader -----------------------------------------------------------------------------
def live_writer_dir(root: Path, writer_id: str) -> int:
    """A writer folder whose lock this test holds: to the reader, a live writer."""
    return layout.lock_writer_dir(root / writer_id)


def test_reader_waits_at_a_record_being_written_and_skips_a_torn_one_once_closed(tmp_path):
    lock_fd = live_writer_dir(tmp_path, "w")
    reader = LogReader(tmp_path)
    seg0 = tmp_path / "w" / "00000000000000000000.seg"
    one, two, three = encode_frame(b"one"), encode_frame(b"two" * 10), encode_frame(b"three")
    seg0.write_bytes(one + two[:5])
    got = reader.read("w", Position.origin())
    assert [r.payload for r in got] == [b"one"] and got.next == Position("00000000000000000000", len(one))
    again = reader.read("w", got.next)
    assert not again and again.next == got.next  # incomplete in an open segment: retry later
    with seg0.open("ab") as f:
        f.write(two[5:] + three[:4])  # the record completes; the next one is torn
    got = reader.read("w", got.next)
    assert [r.payload for r in got] == [b"two" * 10]
    assert not reader.read("w", got.next) and reader.skipped_segments == 0
    # the writer moves on to a new segment: the torn tail is final, skipped and counted
    (tmp_path / "w" / "00000000000000000001.seg").write_bytes(encode_frame(b"four"))
    moved = reader.read("w", got.next)
    assert [r.payload for r in moved] == [b"four"] and moved[0].start == Position("00000000000000000001", 0)
    assert reader.stats() == {"skipped_segments": 1, "skipped_bytes": 4}
    os.close(lock_fd)
    # dead writer: its last segment is closed; a corrupt record in it is skipped too
    with (tmp_path / "w" / "00000000000000000001.seg").open("ab") as f:
        f.write(b"\x00" * 16)
    end = reader.read("w", moved.next)
    assert not end and end.next == Position("00000000000000000001", len(encode_frame(b"four")) + 16)
    assert reader.stats()["skipped_segments"] == 2 and reader.backlog("w", end.next) == 0


def test_reader_returns_one_record_larger_than_max_bytes_whole(tmp_path):
    with LogWriter(tmp_path, settings(), writer_id="big") as writer:
        writer.append(b"s")
        writer.append(b"L" * 100_000)
        writer.append(b"t")
    reader = LogReader(tmp_path)
    got, _ = read_all(reader, "big", max_bytes=1000)
    assert got == [b"s", b"L" * 100_000, b"t"]


# --- the checkpoint -------------------------------------------------------------------------
def test_checkpoint_round_trip_is_atomic_and_refuses_garbage(tmp_path):
    cp = Checkpoint(tmp_path / "ingest" / "checkpoint.json")
    assert cp.load() == {}
    start, end = Position("00000000000000000002", 0), Position("00000000000000000002", 4096)
    states = {"w1": WriterState(Position("00000000000000000001", 77)),
              "w2": WriterState(start, Pending(start, end, batch_token("w2", start, end)))}
    cp.save(states)
    assert cp.load() == states
    assert states["w2"].pending.token == "w2:00000000000000000002:0-4096"
    assert os.listdir(tmp_path / "ingest") == ["checkpoint.json"]  # no temporary file left behind
    cp.path.write_text(json.dumps({"v": 1, "writers": {"w": {"position": ["x"]}}}))
    with pytest.raises(ValueError):
        cp.load()


def test_resume_from_a_checkpoint_with_a_pending_batch(tmp_path):
    log_root, cp_path = tmp_path / "log", tmp_path / "checkpoint.json"
    with LogWriter(log_root, settings(), writer_id="w") as writer:
        for i in range(25):
            writer.append(b"rec-%02d" % i)
    # ingester 1: inserts the first batch, records the second as pending, then dies
    reader = LogReader(log_root)
    first = reader.read("w", Position.origin(), max_records=10)
    Checkpoint(cp_path).save({"w": WriterState(first.next)})
    second = reader.read("w", first.next, max_records=10)
    pending = Pending.for_records("w", second)
    Checkpoint(cp_path).save({"w": WriterState(first.next, pending)})
    # ingester 2: re-reads exactly the pending range with the same token, then goes on
    state = Checkpoint(cp_path).load()["w"]
    again = LogReader(log_root).read_range("w", state.pending.start, state.pending.end)
    assert [r.payload for r in again] == [r.payload for r in second] and len(again) == 10
    assert Pending.for_records("w", again).token == state.pending.token == f"w:{second[0].start.segment}:{second[0].start.offset}-{second[-1].end.offset}"
    Checkpoint(cp_path).save({"w": WriterState(state.pending.end)})
    rest, _ = read_all(LogReader(log_root), "w", Checkpoint(cp_path).load()["w"].position)
    assert rest == [b"rec-%02d" % i for i in range(20, 25)]
    with pytest.raises(ValueError):
        reader.read_range("w", state.pending.start, Position(state.pending.end.segment, state.pending.end.offset - 1))


def test_the_log_is_readable_by_its_owner_only(tmp_path):
    """Records hold the client's request body (prompts), whatever ``bodies`` says for rows."""
    root = tmp_path / "log"
    with LogWriter(root, LogSettings(fsync="never")) as writer:
        assert writer.append(b"a prompt")
        (segment,) = writer.dir.glob("*.seg")
        for path in (root, writer.dir, segment):
            assert os.stat(path).st_mode & 0o077 == 0, path
