"""Pydantic model of the ``responses:`` section of ``gateway.yaml``: the state the gateway keeps
for ``/v1/responses`` answered by targets that translate the Responses API to Chat Completions
(docs/providers.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ResponsesSettings(BaseModel):
    """Conversations of translated Responses API answers, kept for ``previous_response_id`` and
    the stored-response endpoints (``GET``/``DELETE /v1/responses/{id}``, its input items).

    They live in the store the ``cache:`` section names: this process's memory, or Redis
    (``cache.store: redis``, ``cache.redis_url``) shared by every instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl_s: float = Field(86400.0, gt=0, description=(
        "seconds a translated response is kept: continued with previous_response_id, read with GET "
        "/v1/responses/{id} (store: false keeps nothing)"))
    max_bytes: int = Field(64 * 1024 * 1024, ge=0, description=(
        "memory store bound for kept conversations (least recently used dropped beyond it)"))


__all__ = ["ResponsesSettings"]
