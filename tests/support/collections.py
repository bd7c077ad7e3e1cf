"""A gateway with retrieval collections for the collections tests: the mock's bag-of-words
embeddings (model ``emb``), a fake upstream for chat (``gpt-test``), three tenants' keys, an
admin key, a chain whose first step retrieves, and the embedded store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import openai

from tests.support.telemetry import chdb_dsn, telemetry_yaml

ADMIN = "admin-key-for-collections-tests"
KEY_A = "sk-gw-coll-team-a-0123456789abcdef"
KEY_B = "sk-gw-coll-team-b-0123456789abcdef"
KEY_PUBLIC = "sk-gw-coll-public-0123456789abcd"  # team-a, but only collections named public-*, models gpt-*

ANSWER_PROMPT = """
versions:
  - version: 1
    variables:
      - {name: docs, type: array}
      - {name: input, type: string}
    messages:
      - role: system
        content: "Answer from these notes:{% for d in docs %} [{{ d.doc_id }}] {{ d.text }}{% endfor %}"
      - {role: user, content: "{{ input }}"}
labels: {production: 1}
"""

CHAIN = """
description: retrieve, then answer from what was found
steps:
  - name: docs
    retrieve: {collection: handbook, k: 2, query: "{{ input }}"}
  - name: answer
    prompt: answer@production
    model: gpt-test
"""


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def write_config(root: Path, upstream_url: str, database: str) -> Path:
    """The gateway's config (and its prompt and chain folders) under ``root``."""
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "chains").mkdir(exist_ok=True)
    (root / "prompts" / "answer.yaml").write_text(ANSWER_PROMPT)
    (root / "chains" / "rag.yaml").write_text(CHAIN)
    path = root / "gateway.yaml"
    path.write_text(f"""
server: {{admin_key: {ADMIN}}}
backends:
  fake: {{type: openai, base_url: "{upstream_url}", api_key: sk-backend-secret}}
  mock: {{type: mock, mock: {{embedding_dims: 256}}}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  emb: {{targets: [{{backend: mock}}]}}
  rag: {{chain: rag}}
keys:
  - {{tenant: team-a, id: team-a-main, sha256: {sha(KEY_A)}}}
  - {{tenant: team-b, id: team-b-main, sha256: {sha(KEY_B)}}}
  - {{tenant: team-a, id: team-a-public, sha256: {sha(KEY_PUBLIC)}, collections: ["public-*"], models: ["gpt-*"]}}
pricing:
  models:
    emb: {{input: 1000000.0, output: 0.0}}
{telemetry_yaml(chdb_dsn(), database, root / "spool")}
""")
    return path


def admin(gw, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, gw.url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60, **kw)


def flush(gw) -> None:
    resp = admin(gw, "POST", "/admin/telemetry/flush?timeout=60")
    assert resp.status_code == 200 and resp.json()["flushed"], resp.text


def sdk(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def search(gw, key: str | None, name: str, **body) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gw.url}/v1/collections/{name}/search", json=body, headers=headers, timeout=60)
