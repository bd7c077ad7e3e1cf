"""``llm-gateway collections``: retrieval collections (``gateway.retrieval``; docs/retrieval.md).

``create`` a collection (its embeddings model is asked once for the length of its vectors),
``add`` files to it (text, Markdown, JSONL: chunked here by the collection's size and overlap,
embedded by the gateway ``BATCH`` chunks a call, stored as rows; the command waits until the
store holds them, so a ``search`` right after finds them), ``search`` it, ``list`` them. Every
command goes through a gateway (``gateway.cli.collections_client``). Exit status 2 on an error.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

from gateway.cli.collections_client import Connection, connect, parse_pairs
from gateway.cli.store_client import DATA_DIR_OPTION
from gateway.cli.support import config_option, fail, load_cli_config, say
from gateway.config import environment

BATCH = 64  # chunks a call: one embeddings request each


def _options(fn):
    fn = click.option("--url", default=None, help="The gateway to use (default: the running one, else one started "
                      "in this process).")(fn)
    fn = click.option("--admin-key", envvar="GATEWAY_ADMIN_KEY", default=None,
                      help="Admin key ($GATEWAY_ADMIN_KEY; default: the config's server.admin_key).")(fn)
    fn = click.option("--timeout", type=float, default=120.0, show_default=True,
                      help="Seconds to wait for each answer and for the store.")(fn)
    return DATA_DIR_OPTION(config_option(fn))


@click.group("collections")
def collections() -> None:
    """Retrieval collections: create, add documents, search, list."""


def _connect(config_path, url, admin_key, data_dir, timeout):
    return connect(load_cli_config(config_path, announce=False), url, admin_key, data_dir, timeout)


@collections.command("create")
@click.argument("name")
@click.option("--embedding-model", required=True, help="The public model that embeds its chunks and queries.")
@click.option("--chunk-size", type=click.IntRange(1, 100_000), default=800, show_default=True,
              help="Characters a chunk holds at most.")
@click.option("--chunk-overlap", type=click.IntRange(0, 99_999), default=100, show_default=True,
              help="Characters of a chunk's end repeated at the next one's start.")
@click.option("--description", default="", help="What the collection holds.")
@click.option("--tenant", default="", help="The tenant that owns it (default: shared by every tenant).")
@_options
def create(name: str, embedding_model: str, chunk_size: int, chunk_overlap: int, description: str, tenant: str,
           url, admin_key, timeout, config_path, data_dir) -> None:
    """Create collection NAME."""
    if chunk_overlap >= chunk_size:
        raise click.UsageError("--chunk-overlap must be smaller than --chunk-size")
    with _connect(config_path, url, admin_key, data_dir, timeout) as gw:
        made = gw.call("POST", "/admin/collections", json={
            "name": name, "embedding_model": embedding_model, "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap, "description": description, "tenant": tenant})
        gw.flush()  # the collection's row is in the store: another process finds it
    click.echo(f"created {made['name']}: model {made['embedding_model']} ({made['dims']} dimensions), chunks of "
               f"{made['chunk_size']} characters overlapping {made['chunk_overlap']}, tenant "
               f"{made['tenant'] or '(shared)'}")


def _chunks(files: tuple[str, ...], collection: dict[str, Any], text_field: str,
            metadata: dict[str, str]) -> list[dict[str, Any]]:
    from gateway.retrieval.chunking import ChunkingError, chunk_file

    chunks: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path in files:
        try:
            documents = chunk_file(path, collection["chunk_size"], collection["chunk_overlap"], text_field=text_field,
                                   metadata=metadata)
        except (ChunkingError, OSError) as exc:
            fail(str(exc))
        for doc in documents:
            if doc.doc_id in seen:
                fail(f"{path}: document {doc.doc_id!r} is also in {seen[doc.doc_id]} (ids name documents: one "
                     "would replace the other)")
            seen[doc.doc_id] = path
            chunks += [{"doc_id": doc.doc_id, "chunk_index": c.index, "text": c.text, "metadata": c.metadata}
                       for c in doc.chunks]
    return chunks


def _wait_for_chunks(gw: Connection, name: str, at_least: int, timeout: float) -> dict[str, Any]:
    """The collection once the store holds ``at_least`` of its chunks (bounded by ``timeout``)."""
    gw.flush()
    deadline = time.monotonic() + timeout
    while True:
        described = gw.call("GET", f"/admin/collections/{name}")
        if described["chunks"] >= at_least or time.monotonic() >= deadline:
            return described
        time.sleep(0.2)  # other workers' request logs are ingested on their own schedule


@collections.command("add")
@click.argument("name")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--text-field", default="text", show_default=True, help="The field of a JSONL line that holds its text.")
@click.option("--metadata", "metadata_pairs", multiple=True, help="KEY=VALUE added to every chunk's metadata (repeat).")
@_options
def add(name: str, files: tuple[str, ...], text_field: str, metadata_pairs: tuple[str, ...],
        url, admin_key, timeout, config_path, data_dir) -> None:
    """Add FILES (text, Markdown, JSONL) to collection NAME; a document added again replaces its chunks."""
    metadata = parse_pairs(metadata_pairs, "--metadata")
    with _connect(config_path, url, admin_key, data_dir, timeout) as gw:
        collection = gw.call("GET", f"/admin/collections/{name}")
        chunks = _chunks(files, collection, text_field, metadata)
        if not chunks:
            fail("the files hold no text to add")
        t0 = time.perf_counter()
        counts: dict[str, int] = {}
        for c in chunks:
            counts[c["doc_id"]] = counts.get(c["doc_id"], 0) + 1
        removed = 0
        for start in range(0, len(chunks), BATCH):
            body: dict[str, Any] = {"chunks": chunks[start:start + BATCH]}
            if start + BATCH >= len(chunks):  # the last call: chunks of an earlier, longer version go
                body["documents"] = counts
            removed += gw.call("POST", f"/admin/collections/{name}/chunks", json=body).get("removed", 0)
        ids = {(c["doc_id"], c["chunk_index"]) for c in chunks}
        described = _wait_for_chunks(gw, name, len(ids), timeout)
        took_s = time.perf_counter() - t0  # embedded, written and in the store: searchable now
    gone = f", removed {_n(removed, 'chunk')} of their earlier versions" if removed else ""
    click.echo(f"added {_n(len(chunks), 'chunk')} of {_n(len(counts), 'document')} to {name} in {took_s:.1f} s{gone}; "
               f"it now holds {_n(described['chunks'], 'chunk')} of {_n(described['documents'], 'document')}")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@collections.command("search")
@click.argument("name")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True, help="How many chunks.")
@click.option("--filter", "filter_pairs", multiple=True, help="KEY=VALUE the chunk's metadata must hold (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option("--api-key", envvar=environment.API_KEY, default=None,
              help="Search as this virtual key ($LLM_GATEWAY_API_KEY) instead of the admin key.")
@_options
def search(name: str, query: str, k: int, filter_pairs: tuple[str, ...], as_json: bool, api_key: str | None,
           url, admin_key, timeout, config_path, data_dir) -> None:
    """Search collection NAME for QUERY: the K nearest chunks, nearest first."""
    body = {"query": query, "k": k, "filter": parse_pairs(filter_pairs, "--filter")}
    with _connect(config_path, url, admin_key, data_dir, timeout) as gw:
        # as a virtual key through the apps' route; else as the admin (the local admin check)
        path = f"/v1/collections/{name}/search" if api_key else f"/admin/collections/{name}/search"
        answer = gw.call("POST", path, key=api_key, json=body)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
        return
    if not answer["data"]:
        say(f"{name}: no chunk found")
    for rank, hit in enumerate(answer["data"], 1):
        text = " ".join(hit["text"].split())
        click.echo(f"{rank}. {hit['distance']:.4f}  {hit['doc_id']}#{hit['chunk_index']}  "
                   f"{text[:100]}{'…' if len(text) > 100 else ''}")


@collections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@_options
def list_cmd(as_json: bool, url, admin_key, timeout, config_path, data_dir) -> None:
    """Every collection: tenant, model, dimensions, chunks and documents."""
    with _connect(config_path, url, admin_key, data_dir, timeout) as gw:
        answer = gw.call("GET", "/admin/collections")
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n")
        return
    for c in answer["data"]:
        click.echo(f"{c['name']}  tenant {c['tenant'] or '(shared)'}  model {c['embedding_model']} ({c['dims']}d)  "
                   f"{c['chunks']} chunks of {c['documents']} documents"
                   + (f"  {c['description']}" if c["description"] else ""))
