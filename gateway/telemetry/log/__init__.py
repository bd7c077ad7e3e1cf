"""The durable request log: the serving process appends one record per request to local
segment files; the ingester reads them into the store and deletes what it has inserted.

Modules: ``framing`` (a record's bytes: magic, length, crc32, payload), ``layout`` (folders,
segment names, locks), ``writer`` (``LogWriter``: the hot-path append), ``upkeep`` (its background
thread: fsync, age rotation, disk bound), ``reader`` (``LogReader``, ``Position``), ``checkpoint``
(the ingester's committed positions and pending batch). Nothing here knows what a record
holds, and nothing here imports the rest of telemetry.
"""

from __future__ import annotations

from gateway.telemetry.log.checkpoint import Checkpoint, Pending, WriterState, batch_token
from gateway.telemetry.log.framing import encode_frame, scan_frames
from gateway.telemetry.log.reader import LogReader, Position, Record, Records
from gateway.telemetry.log.writer import LogWriter

__all__ = ["Checkpoint", "LogReader", "LogWriter", "Pending", "Position", "Record", "Records", "WriterState",
           "batch_token", "encode_frame", "scan_frames"]
