"""Embeddings the gateway asks of itself: a request to its own embeddings route, in-process.

Retrieval (documents, queries, a chain's retrieve step) and the semantic cache (a question)
embed text through ``ProxyHandlers.call_internal``, as chain steps are run: the stages, routing,
the attempt loop and telemetry apply, so every such call is a row of ``llm_requests`` with its
tokens and cost, linked by ``parent_request_id`` to the request it served. ``embedding_request``
builds that request; ``parse_vectors`` reads its answer.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import UpstreamBadAnswerError
from gateway.core.request_body import RequestBody


def embedding_request(model: str, texts: list[str], *, runtime: Any, parent: str, request: Any = None,
                      headers: Any = None, tenant: str = "", session: str = "", client_ip: str = "",
                      user_agent: str = "", metadata: dict[str, str] | None = None) -> RequestContext:
    """The in-process ``embeddings`` request for ``texts`` with public ``model`` on ``runtime``
    (a ``Runtime``: the config in force), serving request ``parent`` (its ``parent_request_id``).
    ``request`` / ``headers``: the client's, for the access stage and the row; ``metadata``: the
    row's tags."""
    ctx = RequestContext(request_id=str(uuid.uuid4()), endpoint="embeddings", t_start=time.perf_counter(),
                         ts_start=time.time(), client_ip=client_ip, user_agent=user_agent, headers=headers)
    ctx.body = RequestBody({"model": model, "input": texts})  # built here: encoded per target
    ctx.model_requested = model
    ctx.request = request
    ctx.runtime = runtime
    ctx.config_hash = runtime.snapshot.content_hash if runtime is not None else ""
    ctx.parent_request_id = parent
    ctx.session_id = session
    ctx.tenant = tenant
    ctx.metadata = metadata
    return ctx


def parse_vectors(raw: bytes, n: int) -> list[list[float]]:
    """The ``n`` vectors of an embeddings answer, in input order (floats, or OpenAI's base64
    little-endian float32). ``UpstreamBadAnswerError`` for anything else."""
    try:
        data = orjson.loads(raw)["data"]
        out: list[list[float] | None] = [None] * n
        for item in data:
            vec = item["embedding"]
            if isinstance(vec, str):
                blob = base64.b64decode(vec)
                vec = list(struct.unpack(f"<{len(blob) // 4}f", blob))
            if not vec or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec):
                raise ValueError("not a vector of numbers")
            index = item["index"]
            if type(index) is not int or not 0 <= index < n:
                raise ValueError("an index outside the inputs")
            out[index] = [float(x) for x in vec]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError, struct.error):
        raise UpstreamBadAnswerError("the embeddings answer is not a list of vectors") from None
    if any(v is None for v in out):
        raise UpstreamBadAnswerError(f"the embeddings answer holds fewer than the {n} vectors asked for")
    return [v for v in out if v is not None]


__all__ = ["embedding_request", "parse_vectors"]
