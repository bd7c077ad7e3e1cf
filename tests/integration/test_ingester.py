"""The ingester's exactly-once rules on real chDB: a batch whose insert landed but was reported
as failed is re-sent with the same token (one row each); an ingester that died between insert
and commit re-inserts its pending batch with the same token on restart (one row each); a dead
writer's fully ingested segments and folder are deleted."""

from __future__ import annotations

import pytest

from gateway.config.telemetry import ClickHouseSettings, LogSettings
from gateway.core.context import RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.ingest.claim import IngesterBusy
from gateway.ingest.ingester import CHECKPOINT, Ingester
from gateway.ingest.rows import build_rows
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.facts import encode_request
from gateway.telemetry.log import Checkpoint, LogWriter, Pending, WriterState
from gateway.telemetry.log.reader import LogReader, Position
from gateway.telemetry.record import RowBuilder
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb  # noqa: F401
from tests.support.telemetry_rows import select

BUILDER = RowBuilder(config_hash="h", instance="i", prices=PriceTable(), tokens=TokenCounter())


class LandsThenFails:
    """A real store whose next ``fail`` inserts commit and then raise (an ambiguous failure)."""

    def __init__(self, store: ClickHouseStore, fail: int = 0):
        self.store, self.fail, self.target = store, fail, store.target

    def ensure(self):
        return self.store.ensure()

    def insert(self, table, columns, payload, token):
        self.store.insert(table, columns, payload, token)
        if self.fail:
            self.fail -= 1
            raise ConnectionResetError("the answer was lost")

    def reset(self):
        self.store.reset()

    def close(self):
        self.store.close()


def write_records(root, n: int, prefix: str) -> str:
    with LogWriter(root, LogSettings(fsync="never")) as writer:
        for i in range(n):
            ctx = RequestContext(request_id=f"{prefix}-{i}", endpoint="chat/completions", t_start=0.0, ts_start=1e9,
                                 model_requested="m", status_code=200, t_end=0.01, usage=Usage(prompt_tokens=1, completion_tokens=1))
            assert writer.append(encode_request(ctx, keep_text=False))
        return writer.writer_id


def counts(tdb: str) -> dict:
    (row,) = select(tdb, "SELECT count() AS n, uniqExact(request_id) AS u FROM llm_requests")
    return row


def test_an_insert_that_landed_but_failed_is_not_duplicated(tmp_path, tdb):
    root = tmp_path / "log"
    write_records(root, 30, "amb")
    store = LandsThenFails(ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn()), fail=2)
    ingester = Ingester(root, store, lambda: BUILDER, batch_rows=10, retry_initial_s=0.01, retry_max_s=0.02)
    try:
        def done() -> bool:
            ingester.step()  # a pass does nothing until the retry backoff has passed
            return ingester.records == 30

        wait_for(done, timeout=60, what="30 records ingested")
        assert ingester.failures == 2
        assert counts(tdb) == {"n": 30, "u": 30}
        assert not list(root.glob("*/*.seg")) and not [p for p in root.iterdir() if not p.name.startswith(".")]
    finally:
        store.close()


def test_a_pending_batch_is_reinserted_with_its_token_after_a_crash(tmp_path, tdb):
    root = tmp_path / "log"
    writer = write_records(root, 12, "crash")
    records = LogReader(root).read(writer, Position.origin(), max_records=5)
    pending = Pending.for_records(writer, records)
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    try:
        # what a crashed ingester left: the batch inserted, its checkpoint still pending
        first = Ingester(root, store, lambda: BUILDER, batch_rows=5)
        first._insert(build_rows(BUILDER, [r.payload for r in records]), pending.token)
        Checkpoint(root / CHECKPOINT).save({writer: WriterState(Position.origin(), pending)})
        assert counts(tdb) == {"n": 5, "u": 5}
        first.close()  # it "died": its lock on the log is gone
        again = Ingester(root, store, lambda: BUILDER, batch_rows=5)
        while again.step():
            pass
        assert counts(tdb) == {"n": 12, "u": 12}  # the pending 5 once, then the other 7
    finally:
        store.close()


def test_a_second_ingester_on_the_same_log_is_refused(tmp_path):
    """Two ingesters would cut different batches (different tokens): every row twice."""
    root = tmp_path / "log"
    first = Ingester(root, None, lambda: BUILDER)
    try:
        with pytest.raises(IngesterBusy, match="another ingester"):
            Ingester(root, None, lambda: BUILDER)
    finally:
        first.close()
    Ingester(root, None, lambda: BUILDER).close()  # released: the next one may take it


def test_a_standby_ingester_takes_the_log_over_when_the_holder_lets_go(tmp_path, tdb):
    """Two gateways built in one process on one data folder (thread mode): the second waits,
    the first ingests both's records, and once it stops the second takes over where it left."""
    root = tmp_path / "log"
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    try:
        holder = Ingester(root, store, lambda: BUILDER, interval_s=0.05)
        standby = Ingester(root, store, lambda: BUILDER, interval_s=0.05, standby=True)
        write_records(root, 7, "first")
        assert standby.step() == 0 and standby.stats()["standby"]  # it does not read: two would duplicate
        while holder.step():
            pass
        holder.close()
        write_records(root, 5, "second")
        wait_for(lambda: standby.step() or counts(tdb)["n"] == 12, what="the standby to take the log")
        while standby.step():
            pass
        assert counts(tdb) == {"n": 12, "u": 12}  # each record once, across the hand-over
        assert "standby" not in standby.stats()
        with pytest.raises(IngesterBusy):  # now it holds the log
            Ingester(root, None, lambda: BUILDER)
        standby.close()
    finally:
        store.close()
