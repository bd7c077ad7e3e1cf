"""The semantic cache end to end: a real gateway, a real embeddings model, the paraphrase set.

``python -m loadtest semantic-e2e --url http://127.0.0.1:9400/v1 --model all-MiniLM-L6-v2 --max-distance 0.1``

Starts ``llm-gateway serve`` (embedded telemetry in a temporary data folder: the ingester owns
chDB and serves it over ClickHouse's HTTP interface, which the serving process's ``vectors``
lane reads) with one chat model answered by the built-in mock backend (no delay; its answers
finish with ``stop``, so they are stored) whose semantic cache uses the embeddings model at
``--url`` (an OpenAI-compatible server, e.g. vLLM serving all-MiniLM-L6-v2). For every pair of
``loadtest/data/paraphrases.jsonl`` it asks the first question (a miss: answered, then stored
as an entry), waits until every entry is in the store, then asks the second question and reads
``x-gateway-cache``. Each pair gets a system message of its own, so its questions share a key
with each other only: the look-up sees exactly one candidate, the pair's first question.

Reported: semantic hits among same-meaning pairs (the hit rate), among different-meaning pairs
(the false-hit rate), the other statuses, ``GET /admin/cache``'s counters (``semantic_errors``:
an embedding or a look-up that failed or timed out, each a miss), and the gateway's answer time
of the second questions (client-side, hits and misses apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.semantic_pairs import Pair, load_pairs

CONFIG = """
backends:
  mock: {{type: mock, mock: {{ttft_ms: 0, itl_ms: 0, tokens: 16}}}}
  emb: {{type: openai, base_url: "{emb_url}", api_key: sk-bench}}
models:
  support-bot:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true}}}}
  text-embed:
    targets: [{{backend: emb, model: "{emb_model}"}}]
cache:
  enabled: true
  store: memory
  semantic: {{embedding_model: text-embed, max_distance: {max_distance}, lookup_timeout_s: {lookup_timeout_s}}}
telemetry:
  data_dir: "{data_dir}"
  flush_interval_ms: 100
"""


def _post(url: str, body: dict[str, Any] | None = None, timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers.items()), resp.read()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def ask(base: str, pair: Pair, text: str) -> tuple[str, float]:
    """One chat request; (``x-gateway-cache``, seconds)."""
    body = {"model": "support-bot", "temperature": 0, "messages": [
        {"role": "system", "content": f"You answer the questions of customer {pair.id}."},
        {"role": "user", "content": text}]}
    t0 = time.perf_counter()
    status, headers, _ = _post(f"{base}/v1/chat/completions", body)
    took = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return headers.get("x-gateway-cache", headers.get("X-Gateway-Cache", "")), took


def start_gateway(cfg: Path, port: int, log: Path) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TZ="UTC", PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LLM_GATEWAY_TELEMETRY", None)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--log-level", "WARNING", "serve", "--config", str(cfg),
                             "--port", str(port)], env=env, cwd=repo, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({proc.returncode}); log {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the gateway did not become ready; log {log}")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 1)


def run(url: str, model: str, max_distance: float, lookup_timeout_s: float = 0.25,
        limit: int | None = None) -> dict[str, Any]:
    from gateway.proxy.server import free_port

    pairs = load_pairs()
    if limit:
        pairs = [p for p in pairs if p.kind == "same"][:limit] + [p for p in pairs if p.kind == "different"][:limit]
    work = Path(tempfile.mkdtemp(prefix="semantic-e2e-"))
    cfg = work / "gateway.yaml"
    cfg.write_text(CONFIG.format(emb_url=url, emb_model=model, max_distance=max_distance,
                                 lookup_timeout_s=lookup_timeout_s, data_dir=work / "data"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_gateway(cfg, port, work / "gateway.log")
    try:
        first = [ask(base, p, p.a)[0] for p in pairs]
        # entries are stored after the answer (the question is embedded then): wait for all,
        # then until the ingester has put them into the store
        deadline = time.monotonic() + 120
        while _get(f"{base}/admin/cache").get("stats", {}).get("semantic_stores", 0) < len(pairs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"entries not all stored: {_get(base + '/admin/cache')}")
            time.sleep(0.2)
        _post(f"{base}/admin/telemetry/flush?timeout=60", None, timeout=90)
        second: dict[str, dict[str, list[float]]] = {"same": {}, "different": {}}
        for p in pairs:
            status, took = ask(base, p, p.b)
            second[p.kind].setdefault(status, []).append(took)
        counters = _get(f"{base}/admin/cache")
    finally:
        proc.terminate()
        proc.wait(30)
    out: dict[str, Any] = {"url": url, "model": model, "max_distance": max_distance,
                           "lookup_timeout_s": lookup_timeout_s, "first_statuses": sorted(set(first)),
                           "counters": counters.get("stats", counters), "load_average": os.getloadavg()}
    for kind, by_status in second.items():
        n = sum(len(v) for v in by_status.values())
        out[kind] = {"pairs": n, "statuses": {s: len(v) for s, v in by_status.items()},
                     "semantic_hit_rate": round(len(by_status.get("semantic_hit", [])) / n, 4) if n else None,
                     "ms": {s: {"p50": _pct(v, 0.5), "p99": _pct(v, 0.99)} for s, v in by_status.items()}}
    return out
