"""Semantic cache look-up latency: ``vectors.semantic_lookup_sql`` at 10k and 100k entries, embedded
(chDB in-process) and over ClickHouse's HTTP interface (as the serving process reads the store).

``python -m loadtest semantic-lookup [--sizes 10000,100000] [--queries 200] [--family chunks] [--json FILE]``

For each size a fresh chDB folder gets a ``llm_semantic_cache_d384`` table (the DDL of
``vectors.create_statements``) filled in one insert (one part, its HNSW graph built on insert):
``--main-share`` of the entries (default 80%) under one tenant and ``key_hash`` (the common case:
one model, one set of parameters), the rest spread over 40 other keys of 4 tenants. Vectors are
unit-length and clustered like questions (a centre per ~20 entries, each entry at a cosine
distance of ~0.1 from its centre, ~0.2 from its neighbours). Query vectors are half "near" (a
centre with fresh noise: a stored entry lies within ~0.2) and half random (nothing near).

Each look-up is timed as the gateway runs it: one ``ReadOnlyClient.query`` (readonly, the
``telemetry.queries`` limits, ``JSONCompact``) with the vectors lane's settings; embedded in a
child process that owns the chDB folder, then over HTTP from this process to a child serving the
folder with ``ClickHouseHTTPInterface`` (read-only; the store's serving path). Variants:

- ``shipped``: ``vectors.SEARCH_SETTINGS`` (``vector_search_filter_strategy=prefilter``);
- ``postfilter``: the HNSW index proposes candidates, the filter applies after
  (``vector_search_filter_strategy=postfilter``, ``use_primary_key=0``: with the key in the
  primary key, ClickHouse otherwise reads the key's ranges and skips the index);
- ``brute``: the index off (``use_skip_indexes=0``): an exact scan of the key's rows.

``--family chunks`` does the same for a collection search (``vectors.search_chunks_sql``, k=5 and
50 candidates as ``gateway.retrieval.search`` asks): the same vectors as chunks of a main
collection and 40 small ones.

For every variant: p50 / p99 / mean (ms) for the main key, a small key and a key with no entries
(the fixed cost: parsing the 384 numbers, planning, answering), the share of
look-ups whose answer is the exact nearest entry (against ``brute``), and ``EXPLAIN indexes=1``'s
line for the ``vec`` index (granules kept / considered: fewer kept means the index chose the rows;
"not in plan": the index was not considered at all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIMS = 384
MAIN = ("acme", "", "k-main")  # (tenant, namespace, key_hash) of most entries
TENANTS = ("acme", "globex", "initech", "umbrella")
OTHER_KEYS = 40
SMALL_KEY = ("umbrella", "", "k-07")  # one of the other keys (~0.5% of the entries)
ABSENT_KEY = ("acme", "", "k-none")  # no entries: the look-up's fixed cost (parse, plan, answer)
SEMANTIC_CASES = (("main key", MAIN), ("small key", SMALL_KEY), ("absent key", ABSENT_KEY))
# ``--family chunks``: the same vectors as chunks of collections (key 0: the main collection)
COLLECTIONS = ("docs", *(f"coll-{i:02d}" for i in range(OTHER_KEYS)))
CHUNK_CASES = (("main collection", "docs"), ("small collection", "coll-07"), ("absent collection", "none"))
CHUNK_K = 5
CLUSTER = 20  # entries per centre
ENTRY_BYTES = 1200  # a cached answer of a few hundred tokens, base64
CHUNK_BYTES = 800  # a chunk's text
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {},  # vectors.SEARCH_SETTINGS, added by the lane's client
    "postfilter": {"vector_search_filter_strategy": "postfilter", "use_primary_key": 0},
    "brute": {"use_skip_indexes": 0},
}


def _keys() -> list[tuple[str, str, str]]:
    others = [(TENANTS[i % len(TENANTS)], "", f"k-{i:02d}") for i in range(OTHER_KEYS)]
    assert SMALL_KEY in others
    return [MAIN, *others]


def _unit(rows):
    import numpy as np

    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_entries(n: int, main_share: float, seed: int = 7):
    """(key index per entry, vectors, centres): clustered unit vectors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((max(1, n // CLUSTER), DIMS)))
    which = rng.integers(0, len(centres), n)
    # noise of half the centre's norm: ~0.1 from the centre, ~0.2 between two entries of a centre
    noise = rng.standard_normal((n, DIMS)) * (0.5 / np.sqrt(DIMS))
    vectors = _unit(centres[which] + noise)
    keys = np.where(rng.random(n) < main_share, 0, rng.integers(1, OTHER_KEYS + 1, n)).astype(np.uint16)
    return keys, vectors, centres


def make_queries(centres, count: int, seed: int = 11) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:
            v = centres[rng.integers(0, len(centres))] + rng.standard_normal(DIMS) * (0.5 / np.sqrt(DIMS))
        else:
            v = rng.standard_normal(DIMS)
        v = v / np.linalg.norm(v)
        out.append({"kind": "near" if i % 2 == 0 else "random", "v": [round(float(x), 7) for x in v]})
    return out


def params(key: tuple[str, str, str], vector: list[float]) -> dict[str, Any]:
    from gateway.telemetry import vectors

    now = time.time()
    return vectors.search_params(vector, tenant=key[0], namespace=key[1], key_hash=key[2],
                                 since=_ts(now - 86400), now=_ts(now))


def chunk_params(collection: str, vector: list[float]) -> dict[str, Any]:
    """A collection search's parameters as ``gateway.retrieval.search`` sends them for k=5."""
    from gateway.telemetry import vectors

    return vectors.search_params(vector, collection=collection, k=CHUNK_K, candidates=max(CHUNK_K * 10, 50))


def searches(family: str) -> tuple[str, list[tuple[str, Callable[[list[float]], dict[str, Any]]]]]:
    """(SQL, [(case label, vector → parameters)]) of ``family``: ``semantic`` or ``chunks``."""
    from gateway.telemetry import vectors

    if family == "chunks":
        return vectors.search_chunks_sql("default", DIMS, []), [
            (label, lambda v, c=c: chunk_params(c, v)) for label, c in CHUNK_CASES]
    return vectors.semantic_lookup_sql("default", DIMS), [
        (label, lambda v, k=k: params(k, v)) for label, k in SEMANTIC_CASES]


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


# --- the child that owns the chDB folder: fill, then time in-process ---------------------------------
def fill(client, n: int, main_share: float, work: Path, family: str = "semantic") -> tuple[Any, dict[str, Any]]:
    """Create the table and insert ``n`` entries (or chunks) in one INSERT (one part); returns
    (centres, info)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gateway.telemetry import vectors
    from gateway.telemetry.schema import SchemaOptions

    table = vectors.table_name(vectors.CHUNKS if family == "chunks" else vectors.SEMANTIC, DIMS)
    for stmt in vectors.create_statements(table, SchemaOptions()):
        client.command(stmt)
    keys, vecs, centres = make_entries(n, main_share)
    flat = pa.array(vecs.reshape(-1))
    arrow = pa.table({"k": pa.array(keys), "embedding": pa.FixedSizeListArray.from_arrays(flat, DIMS)
                      .cast(pa.list_(pa.float32()))})
    path = work / "entries.parquet"
    pq.write_table(arrow, path)
    key_list = _keys()
    tenants = "[" + ",".join(f"'{k[0]}'" for k in key_list) + "]"
    hashes = "[" + ",".join(f"'{k[2]}'" for k in key_list) + "]"
    if family == "chunks":
        colls = "[" + ",".join(f"'{c}'" for c in COLLECTIONS) + "]"
        names = ", ".join(vectors.CHUNK_COLUMN_NAMES)
        row = "rowNumberInAllBlocks()"
        select = (f"{colls}[k + 1], concat('doc-', toString(intDiv({row}, 8))), toUInt32({row} % 8), "
                  f"concat({colls}[k + 1], '/doc-', toString(intDiv({row}, 8)), '#', toString({row} % 8)), "
                  f"randomPrintableASCII({CHUNK_BYTES}), map('lang', 'en'), 'all-MiniLM-L6-v2', embedding, "
                  "now64(3), 1, false")
    else:
        names = ", ".join(vectors.SEMANTIC_COLUMN_NAMES)
        select = (f"{tenants}[k + 1], '', 'gpt-4o-mini', {hashes}[k + 1], generateUUIDv4(), generateUUIDv4(), "
                  "now64(3) - toIntervalMillisecond(rowNumberInAllBlocks()), now64(3) + toIntervalDay(7), "
                  "'all-MiniLM-L6-v2', embedding, concat('question ', toString(rowNumberInAllBlocks())), "
                  f"base64Encode(randomPrintableASCII({ENTRY_BYTES * 3 // 4}))")
    t0 = time.perf_counter()
    client.command(f"INSERT INTO `default`.`{table}` ({names}) SELECT {select} FROM file('{path}', Parquet)",
                   settings={"max_insert_block_size": n + 1, "min_insert_block_size_rows": n + 1,
                             "min_insert_block_size_bytes": 0, "max_threads": 1})
    insert_s = time.perf_counter() - t0
    parts = client.query(f"SELECT count(), sum(rows) FROM system.parts WHERE table = '{table}' AND active").result_rows
    small = key_list.index(SMALL_KEY) if family != "chunks" else COLLECTIONS.index(CHUNK_CASES[1][1])
    labels = [label for label, _ in (CHUNK_CASES if family == "chunks" else SEMANTIC_CASES)]
    rows = {labels[0]: int(np.sum(keys == 0)), labels[1]: int(np.sum(keys == small)), labels[2]: 0}
    return centres, {"family": family, "table": table, "entries": n, "insert_s": round(insert_s, 1),
                     "parts": int(parts[0][0]), "rows": rows}


def explain_vec(run_explain) -> str:
    """The ``vec`` skip index's granules line of ``EXPLAIN indexes=1`` (e.g. ``1/13``)."""
    lines = [line.strip(" \t│└─├") for line in run_explain().splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("Name: vec"):
            for follow in lines[i + 1:i + 5]:
                if follow.startswith("Granules:"):
                    return follow.split(":", 1)[1].strip()
    return "not in plan"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def time_variants(make_client, queries: list[dict[str, Any]], family: str = "semantic",
                  warmup: int = 10) -> dict[str, Any]:
    """Every variant × case: latencies (ms), the answers' first ids, the EXPLAIN line.
    ``make_client(extra_settings)`` → a ``ReadOnlyClient``."""
    from gateway.telemetry import vectors

    sql, cases = searches(family)
    out: dict[str, Any] = {}
    for name, extra in VARIANTS.items():
        client = make_client({**vectors.SEARCH_SETTINGS, **extra})
        try:
            for label, make_params in cases:
                for q in queries[:warmup]:
                    client.query(sql, "JSONCompact", make_params(q["v"]))
                times, answers = [], []
                for q in queries:
                    p = make_params(q["v"])
                    t0 = time.perf_counter()
                    raw = client.query(sql, "JSONCompact", p)
                    times.append((time.perf_counter() - t0) * 1000)
                    rows = json.loads(raw)["data"]
                    answers.append([rows[0][0], rows[0][-1]] if rows else None)
                plan = explain_vec(lambda c=client, mp=make_params, q=queries[0]: c.query(
                    "EXPLAIN indexes=1 " + sql, "TabSeparatedRaw", mp(q["v"])).decode())
                out[f"{name}/{label}"] = {
                    "p50_ms": round(_pct(times, 0.5), 2), "p99_ms": round(_pct(times, 0.99), 2),
                    "mean_ms": round(sum(times) / len(times), 2), "queries": len(times), "vec_granules": plan,
                    "answers": answers}
        finally:
            client.close()
    for name in VARIANTS:  # recall against the exact scan
        for label, _ in cases:
            got, exact = out[f"{name}/{label}"], out[f"brute/{label}"]["answers"]
            # by entry: the index's distances are its own (bf16-quantised) when it answers
            same = sum(1 for a, b in zip(got["answers"], exact, strict=True)
                       if (a is None and b is None) or (a and b and a[0] == b[0]))
            got["exact_share"] = round(same / len(exact), 3)
    for result in out.values():
        result.pop("answers")
    return out


def embedded_child(folder: str, n: int, main_share: float, n_queries: int, out_path: str,
                   family: str = "semantic") -> None:
    """Fill ``folder`` and time the look-ups in this process (chDB in-process)."""
    from gateway.config.telemetry import ClickHouseSettings
    from gateway.telemetry.clickhouse import ReadOnlyClient, connect, parse_dsn

    dsn = f"chdb://{folder}"
    writer = connect(parse_dsn(dsn))
    centres, info = fill(writer, n, main_share, Path(folder).parent, family)
    queries = make_queries(centres, n_queries)
    Path(folder).parent.joinpath("queries.json").write_text(json.dumps(queries))
    results = time_variants(lambda extra: ReadOnlyClient(ClickHouseSettings(), dsn, extra_settings=extra), queries,
                            family)
    Path(out_path).write_text(json.dumps({"info": info, "embedded": results}))


def serve_child(folder: str, port_file: str) -> None:
    """Serve ``folder`` read-only over ClickHouse's HTTP interface until SIGTERM."""
    import signal
    import threading

    from gateway.store.http_interface import ClickHouseHTTPInterface

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ClickHouseHTTPInterface(folder, readonly=True) as server:
        Path(port_file).write_text(str(server.port))
        stop.wait()


# --- the driver --------------------------------------------------------------------------------------
def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.semantic_lookup", *args]


def run_size(n: int, main_share: float, n_queries: int, work: Path, family: str = "semantic") -> dict[str, Any]:
    from gateway.config.telemetry import ClickHouseSettings
    from gateway.telemetry.clickhouse import ReadOnlyClient

    folder = work / f"{family}-n{n}" / "clickhouse"
    folder.parent.mkdir(parents=True)
    out_path = folder.parent / "embedded.json"
    subprocess.run(_child("_embedded", str(folder), str(n), str(main_share), str(n_queries), str(out_path), family),
                   check=True)
    result = json.loads(out_path.read_text())
    queries = json.loads((folder.parent / "queries.json").read_text())
    port_file = folder.parent / "port"
    server = subprocess.Popen(_child("_serve", str(folder), str(port_file)))
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP interface did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        result["server"] = time_variants(
            lambda extra: ReadOnlyClient(ClickHouseSettings(), f"chdb://{folder}", locate=lambda: url,
                                         extra_settings=extra), queries, family)
    finally:
        server.terminate()
        server.wait(30)
    return result


def bench(sizes: list[int], n_queries: int = 200, main_share: float = 0.8, keep: str | None = None,
          family: str = "semantic") -> dict[str, Any]:
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="semantic-lookup-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sized = {str(n): run_size(n, main_share, n_queries, work, family) for n in sizes}
        return {"family": family, "load_before": os.getloadavg(), "sizes": sized, "load_after": os.getloadavg()}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def table(results: dict[str, Any]) -> str:
    lines = ["| entries | store | variant | filter (rows) | p50 ms | p99 ms | mean ms | exact nearest | vec granules |",
             "|---:|---|---|---|---:|---:|---:|---:|---|"]
    for n, r in results["sizes"].items():
        rows = r["info"]["rows"]
        for store in ("embedded", "server"):
            for case, m in r.get(store, {}).items():
                variant, label = case.split("/")
                lines.append(f"| {int(n):,} | {store} | {variant} | {label} ({rows[label]:,}) | {m['p50_ms']:.1f} "
                             f"| {m['p99_ms']:.1f} | {m['mean_ms']:.1f} | {m['exact_share']:.0%} "
                             f"| {m['vec_granules']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_embedded":
        folder, n, share, q, out, family = argv[1:7]
        embedded_child(folder, int(n), float(share), int(q), out, family)
        return 0
    if argv and argv[0] == "_serve":
        serve_child(argv[1], argv[2])
        return 0
    print("use: python -m loadtest semantic-lookup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
