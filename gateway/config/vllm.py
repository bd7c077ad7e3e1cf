"""Pydantic models for vLLM fleets: a vLLM backend's ``vllm:`` (metrics scraping) and
``launch:`` (a server the gateway starts) blocks, and ``routing.vllm_load`` (the ``vllm-load``
strategy's weights and prefix affinity).

Kept apart from ``models.py`` so fleet settings evolve without touching the core models.
Behaviour and the scoring formula: docs/vllm.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from gateway.config.models import GatewayConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VllmScrape(_Strict):
    """``backends.<name>.vllm``: how the gateway watches a ``type: vllm`` server.

    Every ``scrape_interval_ms`` a background task reads ``GET /health`` and ``GET /metrics``
    (Prometheus text) with ``timeout_ms``; after ``down_after`` failed scrapes in a row the
    server is taken out of rotation (its targets' circuits are opened) until a scrape succeeds
    again. ``metrics_url`` / ``health_url`` default to the server root of ``base_url``
    (``http://host:8000/v1`` → ``http://host:8000/metrics``). ``enabled: false`` turns the
    scraper off (``vllm-load`` then ranks the server by the gateway's own in-flight count).
    """

    enabled: bool = True
    scrape_interval_ms: float = Field(500.0, ge=20)
    timeout_ms: float = Field(1000.0, gt=0)
    down_after: int = Field(2, ge=1)
    metrics_url: str | None = None
    health_url: str | None = None


class VllmLaunch(_Strict):
    """``backends.<name>.launch``: a vLLM server the gateway starts, supervises and stops.

    Runs ``<python> -m vllm.entrypoints.openai.api_server --model <model> --host H --port P
    [--served-model-name N] <args...>`` (host and port from the backend's ``base_url``) with
    ``env`` added to the gateway's environment (e.g. ``CUDA_VISIBLE_DEVICES``), output to
    ``log_file`` (default ``<data_dir>/vllm/<backend>.log``). The server gets traffic only once
    ``/health`` answers. If it exits it is restarted after ``backoff_initial_s``, doubling up to
    ``backoff_max_s`` while it keeps failing (``restart: false``: left down). One that is not
    healthy within ``startup_timeout_s`` is killed and restarted. On shutdown: SIGTERM to its
    process group, SIGKILL after ``stop_timeout_s``.
    """

    model: str
    served_model_name: str | None = None
    python: str | None = Field(None, description="interpreter with vLLM installed (default: the gateway's)")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, repr=False)  # may hold secrets (VLLM_API_KEY, HF_TOKEN)
    cwd: str | None = None
    log_file: str | None = None
    startup_timeout_s: float = Field(600.0, gt=0)
    stop_timeout_s: float = Field(30.0, gt=0)
    restart: bool = True
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)


class VllmLoadWeights(_Strict):
    """Weights of the ``vllm-load`` score (lower is better):
    ``waiting·num_requests_waiting + running·num_requests_running + kv_cache·kv_cache_usage_perc
    (0..1) + inflight·(requests this gateway sent since the snapshot)``."""

    waiting: float = Field(1.0, ge=0)
    running: float = Field(0.25, ge=0)
    kv_cache: float = Field(2.0, ge=0)
    inflight: float = Field(1.0, ge=0)


class PrefixAffinity(_Strict):
    """Keep requests that share a prompt prefix on one server (its prefix cache pays off).

    The first ``prefix_chars`` characters of the prompt (chat messages after prompt injection,
    or the completion prompt) are hashed onto a consistent-hash ring of the candidate servers
    (``virtual_nodes`` points each), so adding or removing a server moves only its share of
    prefixes. Bounded load: the preferred server is passed over (for the next one on the ring)
    while its score exceeds ``overload_factor × lowest score + overload_slack``.
    """

    enabled: bool = False
    prefix_chars: int = Field(1024, ge=1)
    overload_factor: float = Field(1.5, ge=1)
    overload_slack: float = Field(2.0, ge=0)
    virtual_nodes: int = Field(64, ge=1, le=4096)


class VllmLoadSettings(_Strict):
    """``routing.vllm_load``: the ``vllm-load`` strategy. A snapshot older than
    ``stale_after_ms`` is ignored (the target is ranked by its in-flight count alone).
    ``prefix_affinity: true`` is short for ``{enabled: true}``."""

    weights: VllmLoadWeights = VllmLoadWeights()
    stale_after_ms: float = Field(5000.0, gt=0)
    prefix_affinity: PrefixAffinity = PrefixAffinity()

    @model_validator(mode="before")
    @classmethod
    def _affinity_shorthand(cls, data):
        if isinstance(data, dict) and isinstance(data.get("prefix_affinity"), bool):
            data = {**data, "prefix_affinity": {"enabled": data["prefix_affinity"]}}
        return data


def server_root(base_url: str) -> str:
    """``http://host:8000/v1`` → ``http://host:8000`` (where vLLM serves /metrics and /health)."""
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def vllm_problems(cfg: "GatewayConfig") -> list[str]:
    """Path-qualified errors of the vLLM blocks (for ``GatewayConfig``'s validator)."""
    problems = []
    for name, b in cfg.backends.items():
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
