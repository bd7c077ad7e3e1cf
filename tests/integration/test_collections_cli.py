"""``llm-gateway collections``: create, add (text, Markdown, JSONL), search and list, through a
gateway the command starts in-process when none runs, and through a running ``serve`` (a real
process holding the embedded store) that the command finds from the data folder."""

from __future__ import annotations

import httpx
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.retrieval.chunking import chunk_id
from tests.support.collections import ADMIN
from tests.support.telemetry import chdb_dsn, free_port, isolate_telemetry_data, spawn_gateway, tdb  # noqa: F401

NOTES = "The kettle boils water for tea in two minutes.\n\nIt switches itself off when the water boils.\n"
GUIDE = "# Garden\n\nTomatoes grow best in sunny gardens.\n\n## Compost\n\nCompost feeds the soil with worms.\n"
FAQ = ('{"id": "hours", "text": "Opening hours are nine to five on weekdays.", "lang": "en"}\n'
       '{"id": "zeiten", "text": "Geoeffnet ist werktags von neun bis fuenf.", "lang": "de"}\n')


def write_files(root):
    (root / "notes.txt").write_text(NOTES)
    (root / "guide.md").write_text(GUIDE)
    (root / "faq.jsonl").write_text(FAQ)
    return [str(root / n) for n in ("notes.txt", "guide.md", "faq.jsonl")]


def config_text(telemetry: str, port: int) -> str:
    return f"""
server: {{admin_key: {ADMIN}, port: {port}}}
backends:
  mock: {{type: mock, mock: {{embedding_dims: 256}}}}
models:
  emb: {{targets: [{{backend: mock}}]}}
{telemetry}
"""


def cli(*args: str):
    result = CliRunner().invoke(main, ["collections", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def exercise(files: list[str], where: list[str]) -> None:
    made = cli("create", "docs", "--embedding-model", "emb", "--chunk-size", "60", "--chunk-overlap", "10",
               "--description", "test docs", *where)
    assert made.exit_code == 0, made.output
    assert "created docs: model emb (256 dimensions), chunks of 60 characters overlapping 10" in made.output
    again = cli("create", "docs", "--embedding-model", "emb", *where)
    assert again.exit_code == 2 and "collection_exists" in again.output

    added = cli("add", "docs", *files, "--metadata", "source=cli", *where)
    assert added.exit_code == 0, added.output
    # notes.txt: two paragraphs, 2 windows; guide.md: 2 sections; faq.jsonl: 2 lines, 2 documents
    assert "added 6 chunks of 4 documents to docs" in added.output
    assert "it now holds 6 chunks of 4 documents" in added.output

    # Right after add, the chunks are found; the query's words pick the document.
    found = cli("search", "docs", "when does the kettle boil water", "-k", "3", "--json", *where)
    assert found.exit_code == 0, found.output
    answer = orjson.loads(found.stdout)
    assert answer["data"][0]["doc_id"] == "notes.txt"
    assert answer["data"][0]["metadata"] == {"source": "cli"}
    assert answer["data"][0]["id"] in {chunk_id("docs", "notes.txt", i) for i in range(2)}
    compost = orjson.loads(cli("search", "docs", "compost worms soil", "-k", "1", "--json", *where).stdout)
    assert compost["data"][0]["metadata"] == {"source": "cli", "section": "Garden > Compost"}
    german = cli("search", "docs", "opening hours", "--filter", "lang=de", *where)
    assert german.exit_code == 0 and german.stdout.startswith("1. ") and "zeiten#0" in german.stdout
    assert len(german.stdout.splitlines()) == 1

    listed = cli("list", *where)
    assert listed.exit_code == 0 and "docs  tenant (shared)  model emb (256d)  6 chunks of 4 documents  test docs" \
        in listed.stdout
    missing = cli("search", "nope", "x", *where)
    assert missing.exit_code == 2 and "HTTP 404 (collection_not_found)" in missing.output


def test_without_a_running_gateway_the_command_serves_the_config_itself(tmp_path, tdb):
    files = write_files(tmp_path)
    config = tmp_path / "gateway.yaml"
    telemetry = f"""telemetry:
  clickhouse: {{dsn: "{chdb_dsn()}", database: {tdb}}}
  log: {{dir: "{tmp_path / 'spool'}"}}
  flush_interval_ms: 100
"""
    config.write_text(config_text(telemetry, free_port()))
    exercise(files, ["--config", str(config)])
    assert "no gateway running; serving the config in this process" in cli("list", "--config", str(config)).output
    # notes.txt again, now one window long: its second chunk of before is removed
    (tmp_path / "notes.txt").write_text("The kettle boils water for tea.")
    shorter = cli("add", "docs", files[0], "--config", str(config))
    assert "added 1 chunk of 1 document to docs" in shorter.output, shorter.output
    assert "removed 1 chunk of their earlier versions; it now holds 5 chunks of 4 documents" in shorter.output
    found = orjson.loads(cli("search", "docs", "switches itself off when the water boils", "-k", "10", "--json",
                             "--config", str(config)).stdout)["data"]
    notes = [(h["doc_id"], h["chunk_index"], h["text"]) for h in found if h["doc_id"] == "notes.txt"]
    assert notes == [("notes.txt", 0, "The kettle boils water for tea.")]
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "notes.txt").write_text("Another file of the same name.")
    twice = cli("add", "docs", files[0], str(tmp_path / "again" / "notes.txt"), "--config", str(config))
    assert twice.exit_code == 2 and "document 'notes.txt' is also in" in twice.output
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "body": "no text field"}\n')
    bad = cli("add", "docs", str(tmp_path / "bad.jsonl"), "--config", str(config))
    assert bad.exit_code == 2 and "bad.jsonl:1: no string field 'text'" in bad.output


def test_a_running_gateway_is_found_from_its_data_folder_and_used(tmp_path):
    files = write_files(tmp_path)
    data = tmp_path / "data"
    config = tmp_path / "gateway.yaml"
    port = free_port()
    config.write_text(config_text("telemetry: {flush_interval_ms: 100}", port))
    proc = spawn_gateway(config, port, tmp_path / "serve.log", LLM_GATEWAY_DATA_DIR=str(data))
    try:
        exercise(files, ["--config", str(config), "--data-dir", str(data)])
        # the chunks are in the running gateway's own store (the command could not open it)
        listed = httpx.get(f"http://127.0.0.1:{port}/admin/collections", headers={"Authorization": f"Bearer {ADMIN}"})
        assert [(c["name"], c["chunks"]) for c in listed.json()["data"]] == [("docs", 6)]
        # A query of many words embeds densely: its vector, as bound parameters, passes the 4 KiB
        # beyond which clickhouse-connect sends a multipart form to the store's HTTP interface.
        long_query = "kettle " + " ".join(f"word{i}" for i in range(300))
        found = httpx.post(f"http://127.0.0.1:{port}/admin/collections/docs/search", timeout=60,
                           headers={"Authorization": f"Bearer {ADMIN}"}, json={"query": long_query, "k": 2})
        assert found.status_code == 200, found.text
        assert len(found.json()["data"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize("args, message", [
    (["create", "x", "--embedding-model", "emb", "--chunk-size", "10", "--chunk-overlap", "10"],
     "--chunk-overlap must be smaller than --chunk-size"),
    (["search", "x", "q", "--filter", "novalue"], "--filter 'novalue': expected KEY=VALUE"),
])
def test_usage_errors(args, message):
    result = cli(*args)
    assert result.exit_code == 2 and message in result.output
