"""Pydantic models for vLLM fleets: a vLLM backend's ``vllm:`` (metrics scraping) and
``launch:`` (a server the gateway starts) blocks, and ``routing.vllm_load`` (the ``vllm-load``
strategy's weights and prefix affinity).

Kept apart from ``models.py`` so fleet settings evolve without touching the core models.
Behaviour and the scoring formula: docs/vllm.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VllmScrape(_Strict):
    """How the gateway watches a ``type: vllm`` server: a background task reads ``GET /health``
    and ``GET /metrics`` (Prometheus text); a server that fails ``down_after`` scrapes in a row
    is taken out of rotation (its targets' circuits are opened) until a scrape succeeds. The
    URLs default to the server root of ``base_url`` (``http://host:8000/v1`` →
    ``http://host:8000/metrics``).
    """

    enabled: bool = Field(True, description=(
        "watch the server; false: vllm-load ranks it by this gateway's in-flight count only"))
    scrape_interval_ms: float = Field(500.0, ge=20, description="how often /health and /metrics are read (ms)")
    timeout_ms: float = Field(1000.0, gt=0, description="timeout of each scrape request (ms)")
    down_after: int = Field(2, ge=1, description=(
        "failed scrapes in a row that take the server out of rotation until one succeeds"))
    metrics_url: str | None = Field(None, description="the Prometheus metrics URL (default: <server root>/metrics)")
    health_url: str | None = Field(None, description="the health URL (default: <server root>/health)")


class VllmLaunch(_Strict):
    """A vLLM server the gateway starts, supervises and stops.

    Runs ``<python> -m vllm.entrypoints.openai.api_server --model <model> --host H --port P
    [--served-model-name N] <args...>`` (host and port from the backend's ``base_url``). The
    server gets traffic only once ``/health`` answers. On shutdown: SIGTERM to its process
    group, SIGKILL after ``stop_timeout_s``.
    """

    model: str = Field(description="the model to serve (vllm --model)")
    served_model_name: str | None = Field(None, description="vllm --served-model-name")
    python: str | None = Field(None, description="interpreter with vLLM installed (default: the gateway's)")
    args: list[str] = Field(default_factory=list, description="more vllm command-line arguments")
    env: dict[str, str] = Field(default_factory=dict, repr=False, description=(
        "environment added to the gateway's for the server (e.g. CUDA_VISIBLE_DEVICES); may hold secrets"))
    cwd: str | None = Field(None, description="working directory of the server")
    log_file: str | None = Field(None, description="the server's output (default <data_dir>/vllm/<backend>.log)")
    startup_timeout_s: float = Field(600.0, gt=0, description=(
        "a server not healthy within this is killed and restarted"))
    stop_timeout_s: float = Field(30.0, gt=0, description="on shutdown, SIGKILL this long after SIGTERM")
    restart: bool = Field(True, description="restart the server when it exits (false: leave it down)")
    backoff_initial_s: float = Field(1.0, ge=0, description=(
        "first wait before a restart, doubled while it keeps failing"))
    backoff_max_s: float = Field(60.0, ge=0, description="longest wait between restarts")


class VllmLoadWeights(_Strict):
    """Weights of the ``vllm-load`` score (lower is better):
    ``waiting·num_requests_waiting + running·num_requests_running + kv_cache·kv_cache_usage_perc
    (0..1) + inflight·(requests this gateway sent since the snapshot)``.
    """

    waiting: float = Field(1.0, ge=0, description="weight of vllm:num_requests_waiting")
    running: float = Field(0.25, ge=0, description="weight of vllm:num_requests_running")
    kv_cache: float = Field(2.0, ge=0, description="weight of the KV-cache usage (0..1)")
    inflight: float = Field(1.0, ge=0, description="weight of the requests this gateway sent since the snapshot")


class PrefixAffinity(_Strict):
    """Keep requests that share a prompt prefix on one server (its prefix cache pays off).

    The first ``prefix_chars`` characters of the prompt (chat messages after prompt injection,
    or the completion prompt) are hashed onto a consistent-hash ring of the candidate servers,
    so adding or removing a server moves only its share of prefixes.
    """

    enabled: bool = Field(False, description="send requests that share a prompt prefix to one server")
    prefix_chars: int = Field(1024, ge=1, description="characters of the prompt that make the prefix")
    overload_factor: float = Field(1.5, ge=1, description=(
        "pass the preferred server over while its score exceeds overload_factor × lowest + overload_slack"))
    overload_slack: float = Field(2.0, ge=0, description="see overload_factor")
    virtual_nodes: int = Field(64, ge=1, le=4096, description="points per server on the consistent-hash ring")


class VllmLoadSettings(_Strict):
    """The ``vllm-load`` strategy: its score and prefix affinity (docs/vllm.md)."""

    weights: VllmLoadWeights = Field(VllmLoadWeights(), description="weights of the load score")
    stale_after_ms: float = Field(5000.0, gt=0, description=(
        "a snapshot older than this is ignored (the target is ranked by in-flight count alone)"))
    # ``prefix_affinity: true`` is short for ``{enabled: true}`` (the schema says so too).
    prefix_affinity: Annotated[PrefixAffinity, BeforeValidator(
        lambda v: {"enabled": v} if isinstance(v, bool) else v, json_schema_input_type=PrefixAffinity | bool)] = Field(
        PrefixAffinity(), description="prefix affinity; true is short for {enabled: true}")


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000`` (where vLLM serves /metrics and /health)."""
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def vllm_problems(backends: Mapping[str, Any]) -> list[str]:
    """Path-qualified errors of the vLLM blocks of ``backends`` (``GatewayConfig.backends``, for
    its validator; taking the mapping keeps this module below ``gateway.config.models``)."""
    problems = []
    for name, b in backends.items():
        vllm, launch = getattr(b, "vllm", None), getattr(b, "launch", None)
        if b.type != "vllm":
            if vllm is not None:
                problems.append(f"backends.{name}.vllm: only for type: vllm backends")
            if launch is not None:
                problems.append(f"backends.{name}.launch: only for type: vllm backends")
            continue
        if launch is not None:
            parts = urlsplit(b.base_url or "")
            try:
                port = parts.port
            except ValueError:
                port = None
            if parts.scheme != "http" or not parts.hostname or port is None:
                problems.append(f"backends.{name}.launch: base_url must be http://HOST:PORT/v1 with an explicit "
                                f"port (the server is started on that host and port), not {b.base_url!r}")
            if launch.backoff_max_s < launch.backoff_initial_s:
                problems.append(f"backends.{name}.launch.backoff_max_s: smaller than backoff_initial_s")
    return problems
