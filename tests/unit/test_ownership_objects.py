"""What the ownership stage reads of a request and an answer, and the SQLite ledger's time to live."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway.core.errors import InvalidRequestError
from gateway.ownership.ledger import SqliteLedger
from gateway.ownership.objects import (
    collection_of,
    created_ids,
    listing,
    may_name_produced,
    named_id,
    path_ids,
    produced_ids,
    referenced_ids,
)
from gateway.ownership.stage import OwnershipStage


def test_paths_name_the_object_after_their_collection():
    cases = {
        "files": ("files", None), "files/file-1/content": ("files", "file-1"),
        "batches/batch_1/cancel": ("batches", "batch_1"), "chat/completions": ("chat/completions", None),
        "chat/completions/chatcmpl-1/messages": ("chat/completions", "chatcmpl-1"),
        "responses/input_tokens": ("responses", None), "responses/resp_1": ("responses", "resp_1"),
        "fine_tuning/jobs/ftjob-1/cancel": ("fine_tuning/jobs", "ftjob-1"),
        "vector_stores/vs_1/files/file-2": ("vector_stores", "vs_1"), "threads/runs": ("threads", None),
        "messages/batches/msgbatch_1/results": ("messages/batches", "msgbatch_1"), "messages": (None, None),
        "Files/file-1": ("files", "file-1"),  # a backend may ignore the case of paths
        "embeddings": (None, None), "filesystem": (None, None), "fine_tuning": (None, None),
    }
    for endpoint, (collection, object_id) in cases.items():
        got = collection_of(endpoint)
        assert got == collection, endpoint
        assert (named_id(endpoint, got) if got else None) == object_id, endpoint


def test_every_object_a_path_names():
    assert path_ids("vector_stores/vs_1/files/file-2/content", "vector_stores") == ["vs_1", "file-2"]
    assert path_ids("vector_stores/vs_1/File_Batches/vsfb_3/cancel", "vector_stores") == ["vs_1", "vsfb_3"]
    assert path_ids("vector_stores/vs_1/files", "vector_stores") == ["vs_1"]
    assert path_ids("vector_stores/vs_1/search", "vector_stores") == ["vs_1"]
    assert path_ids("threads/thread_1/runs/run_2/steps", "threads") == ["thread_1", "run_2"]
    assert path_ids("threads/runs", "threads") == [] and path_ids("files", "files") == []
    assert path_ids("fine_tuning/jobs/ftjob-1/checkpoints", "fine_tuning/jobs") == ["ftjob-1"]


def test_bodies_name_objects_in_their_top_level_fields():
    body = {"input_file_id": "file-1", "training_file": "file-2", "file_ids": ["file-3", ""],
            "previous_response_id": "resp_1", "input": [{"file_id": "nested"}], "file_id": None}
    assert referenced_ids(body) == [("input_file_id", "file-1"), ("training_file", "file-2"),
                                    ("previous_response_id", "resp_1"), ("file_ids", "file-3")]
    assert referenced_ids([1]) == []
    for wrong in ({"input_file_id": ["file-1"]}, {"file_ids": "file-1"}, {"vector_store_ids": [1]},
                  {"conversation": 5}, {"previous_response_id": {"id": "resp_1"}}):
        with pytest.raises(InvalidRequestError) as caught:
            referenced_ids(wrong)
        assert caught.value.param == next(iter(wrong)) and caught.value.status == 400
    assert referenced_ids({"files": [{"file_id": "file-4"}, {"file_id": 5}, "x"]}) == [("files", "file-4")]
    assert referenced_ids({"conversation": "conv_1"}) == [("conversation", "conv_1")]
    assert referenced_ids({"conversation": {"id": "conv_2"}}) == [("conversation", "conv_2")]


def test_an_answer_names_the_objects_it_created():
    upload = {"id": "upload_1", "object": "upload", "file": {"id": "file-1", "object": "file"}}
    assert created_ids(orjson.dumps(upload)) == ["upload_1", "file-1"]
    assert created_ids(orjson.dumps({"object": "list", "id": "x", "data": []})) == []
    assert created_ids(b"not json") == [] and created_ids(b"[1]") == []
    # Anthropic's Files and Message Batches say what they are in ``type``; its lists have no ``object``.
    assert created_ids(orjson.dumps({"id": "file_011", "type": "file", "filename": "a.pdf"})) == ["file_011"]
    assert created_ids(orjson.dumps({"id": "msgbatch_1", "type": "message_batch"})) == ["msgbatch_1"]
    assert listing(orjson.dumps({"data": [], "has_more": False, "first_id": None})) is not None
    assert listing(orjson.dumps({"object": "vector_store.search_results.page", "data": []})) is None


def test_the_sqlite_ledger_forgets_after_its_ttl(tmp_path):
    now = [1000.0]
    ledger = SqliteLedger(tmp_path / "objects.sqlite3", ttl_s=60, clock=lambda: now[0])
    other = SqliteLedger(tmp_path / "objects.sqlite3", ttl_s=60, clock=lambda: now[0])  # another worker

    async def run():
        await ledger.record(["file-1", "file-2"], "team-a")
        assert await other.owners(["file-1", "file-2", "file-3"]) == {"file-1": "team-a", "file-2": "team-a"}
        await other.forget("file-2")
        assert await ledger.owners(["file-1", "file-2"]) == {"file-1": "team-a"}
        now[0] += 61
        assert await ledger.owners(["file-1"]) == {}
        await ledger.record(["file-3"], "team-b")  # purges what expired
        rows = ledger._conn().execute("SELECT id FROM objects").fetchall()
        assert rows == [("file-3",)]
        await ledger.record(["resp_1"], "team-b", ttl_s=10)  # kept less long than the ledger's TTL
        await ledger.record(["file-5"], "team-b", ttl_s=600)  # never longer
        now[0] += 11
        assert await ledger.owners(["file-3", "resp_1"]) == {"file-3": "team-b"}
        now[0] += 50
        assert await ledger.owners(["file-5"]) == {}
        await ledger.close()
        await other.close()

    asyncio.run(run())


def test_a_batch_or_fine_tune_names_the_files_made_for_it():
    batch = {"id": "batch_1", "object": "batch", "output_file_id": "file-o", "error_file_id": None,
             "metadata": {"output_file_id": "file-x"}}
    assert may_name_produced(orjson.dumps(batch)) and produced_ids(batch) == ["file-o"]
    assert produced_ids({"object": "fine_tuning.job", "result_files": ["file-r", 3]}) == ["file-r"]
    assert produced_ids({"object": "response", "output_file_id": "file-x"}) == []  # only what a job makes
    assert not may_name_produced(b'{"object": "file"}')


def test_an_id_already_anothers_stays_its_first_owners(tmp_path):
    stage = OwnershipStage()
    stage.ledger = SqliteLedger(tmp_path / "objects.sqlite3", ttl_s=60)

    async def run():
        await stage._record_new(["file-1"], "team-a", None)
        await stage._record_new(["file-1", "file-2"], "team-b", None)  # a backend that reused file-1
        assert await stage.ledger.owners(["file-1", "file-2"]) == {"file-1": "team-a", "file-2": "team-b"}
        await stage.ledger.close()

    asyncio.run(run())
