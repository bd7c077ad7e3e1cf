"""Prometheus metrics: ``GET /metrics`` (prometheus-client's text format).

Request metrics are recorded once per request, when it has ended (``observe(ctx)``, a
finisher), from what the ``RequestContext`` holds; the in-flight gauge is the only thing
touched when a request starts. Label children are cached per label combination, so a request
costs a few dictionary lookups and additions: in a single process to plain numbers that are added
to the series when the registry is read (``deferred``). State that lives elsewhere (circuit breakers,
the telemetry sink, config reloads) is read when ``refresh()`` runs: on every scrape, and with
several workers also every ``metrics.refresh_interval_s`` in each worker.

Labels take only values the config bounds (public model names, backends, targets, tenants of
configured keys, a fixed set of statuses and operations): a model name the config does not
know is recorded as ``unknown``, so clients cannot mint series.

``serve --workers N`` uses prometheus-client's multiprocess mode (``multiprocess``): values go
to per-process files at once, and a scrape of any worker aggregates all of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.config.observability import MetricsSettings
from gateway.core.context import RequestContext
from gateway.core.pricing import PriceTable
from gateway.observability import genai
from gateway.observability.deferred import DeferredCounter, DeferredHistogram, FlushFirst, deferrable
from gateway.observability.multiprocess import (  # noqa: F401 - MULTIPROC_ENV, prepare_multiprocess: the CLI's
    MULTIPROC_ENV,
    collect_all,
    mark_process_dead,
    multiprocess_active,
    prepare_multiprocess,
)

log = logging.getLogger("gateway.observability")

# Bucket boundaries from the OpenTelemetry GenAI metric conventions.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
CIRCUIT_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_METRIC_OPERATIONS = frozenset({"chat", "text_completion", "embeddings"})
# Endpoint -> the operation label (the GenAI name, or "other" beyond the metric's operations).
_OPERATION = {endpoint: op if op in _METRIC_OPERATIONS else "other" for endpoint, op in genai.OPERATIONS.items()}
_SINK_COUNTERS = ("written", "lost")  # request log records (RequestLog.stats)
_INF = float("inf")


def _networks(cidrs: list[str]):
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


class GatewayMetrics:
    """The metric families of one gateway process and the ``/metrics`` handler.

    ``models()`` returns the public model names in force (label values outside it become
    ``unknown``); ``health`` is the ``HealthRegistry``; ``sink()`` / ``watcher()`` return the
    telemetry sink and config watcher, or ``None``. ``admin_key()`` is accepted as a scrape token.
    """

    def __init__(self, settings: MetricsSettings, *, models: Callable[[], Any], health=None,
                 sink: Callable[[], Any] = lambda: None, watcher: Callable[[], Any] = lambda: None,
                 admin_key: Callable[[], str | None] = lambda: None, prices: PriceTable | None = None,
                 fleet: Callable[[], Any] = lambda: None):
        self.settings = settings
        self.multiprocess = multiprocess_active()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        # One event loop writes them: request series are kept as plain numbers and added when
        # the registry is read (``deferred``); in multiprocess mode other workers read the files.
        self._defer = not self.multiprocess
        self._deferred: list[DeferredHistogram | DeferredCounter] = []
        self._live = 0  # requests in flight (deferred mode: published when collected)
        if self._defer:
            self.registry.register(FlushFirst(self.flush))  # first: it runs before any metric is read
        self._models = models
        self._health = health
        self._sink = sink
        self._watcher = watcher
        self._admin_key = admin_key
        self._fleet = fleet
        self.prices = prices or PriceTable()
        self._allow = _networks(settings.allow_from)
        token = settings.bearer_token
        self._token_digest = hashlib.sha256(token.encode()).digest() if token else None
        gen = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "backend"]
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of GenAI requests through the gateway, from arrival to the last byte sent.",
            gen + ["status", "error_type"], buckets=DURATION_BUCKETS, registry=reg)
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first generated token.",
            gen, buckets=TTFT_BUCKETS, registry=reg)
        self.tokens = Histogram(
            "gen_ai_client_token_usage", "Tokens per request as the upstream reported them (input / output).",
            gen + ["gen_ai_token_type"], buckets=TOKEN_BUCKETS, registry=reg)
        self.requests = Counter(
            "llm_gateway_requests", "Proxied requests by public model, operation, backend, status and cache status.",
            ["model", "gen_ai_operation_name", "backend", "status", "cache_status"], registry=reg)
        self.in_flight = Gauge("llm_gateway_requests_in_flight", "Proxied requests being served now.",
                               registry=reg, multiprocess_mode="livesum")
        self.attempts = Counter(
            "llm_gateway_upstream_attempts", "Upstream attempts by backend, upstream model and HTTP status "
            "(none: no response).", ["backend", "target_model", "status"], registry=reg)
        self.errors = Counter(
            "llm_gateway_upstream_errors", "Failed upstream attempts by backend and failure class.",
            ["backend", "error_class"], registry=reg)
        self.cost = Counter("llm_gateway_cost_usd", "Cost of answered requests in USD (priced from reported usage).",
                            ["model", "backend", "tenant"], registry=reg)
        self.circuit = Gauge("llm_gateway_circuit_state", "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
                             ["target", "backend"], registry=reg, multiprocess_mode="livemax")
        self.target_in_flight = Gauge("llm_gateway_upstream_in_flight", "Upstream requests in flight per target.",
                                      ["target", "backend"], registry=reg, multiprocess_mode="livesum")
        self._reg = reg
        self._sink_metrics: tuple | None = None  # created when a telemetry sink exists
        self._vllm_metrics: tuple | None = None  # created when vLLM backends are scraped
        self._vllm_failures_seen: dict[str, int] = {}
        self.reloads = Counter("llm_gateway_config_reloads", "Config reloads applied.", registry=reg)
        self.reload_error = Gauge("llm_gateway_config_reload_error",
                                  "1 while the last config change was rejected (the old config serves).",
                                  registry=reg, multiprocess_mode="livemax")
        self.config_info = Gauge("llm_gateway_config_info", "The config in force (its hash as a label).",
                                 ["config_hash"], registry=reg, multiprocess_mode="livemax")
        self._children: dict[tuple, tuple] = {}
        self._attempt_children: dict[tuple, Any] = {}
        self._error_children: dict[tuple, Any] = {}
        self._cost_children: dict[tuple, Any] = {}
        self._sink_seen = dict.fromkeys(_SINK_COUNTERS, 0)
        self._reloads_seen = 0
        self._config_hash = ""
        self._circuit_keys: set[tuple[str, str]] = set()
        self._task: asyncio.Task | None = None

    # --- per request ---------------------------------------------------------------------
    def request_started(self) -> None:
        if self._defer:
            self._live += 1
        else:
            self.in_flight.inc()

    def flush(self) -> None:
        """Add the deferred request values to their series (a collection of the registry does)."""
        for series in self._deferred:
            series.flush()
        if self._defer:
            self.in_flight.set(self._live)

    def observe(self, ctx: RequestContext) -> None:
        """Record a finished request (a finisher)."""
        if self._defer:
            self._live -= 1
        else:
            self.in_flight.dec()
        status = ctx.status_code  # concluded by gateway.core.outcome before any finisher runs
        model = ctx.model_requested
        rt = ctx.runtime  # the config the request ran on: its model names are the label values
        if model and model not in (rt.snapshot.config.models if rt is not None else self._models()):
            model = "unknown"
        operation = _OPERATION.get(ctx.endpoint, "other")
        backend = ctx.backend or "none"
        key = (model, operation, ctx.provider, backend, status, ctx.cache_status, ctx.error_type)
        children = self._children.get(key)
        if children is None:
            children = self._make_children(key)
        duration, ttft, tok_in, tok_out, requests = children
        t_end = ctx.t_end if ctx.t_end is not None else ctx.t_start
        duration.observe(t_end - ctx.t_start)
        requests.inc()
        if ctx.stream and ctx.t_first_token is not None:
            ttft.observe(ctx.t_first_token - ctx.t_start)
        usage = ctx.usage
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        if prompt is not None:
            tok_in.observe(prompt)
        if completion is not None:
            tok_out.observe(completion)
        if usage.reported():
            cost = self.prices.cost((ctx.model_served, ctx.upstream_model, ctx.model_requested),
                                    prompt or 0, completion or 0, usage.cached_tokens, usage.cache_write_tokens, usage)
            if cost:
                ckey = (model or "none", backend, ctx.tenant)
                child = self._cost_children.get(ckey)
                if child is None:
                    child = self._cost_children[ckey] = self._counter(self.cost.labels(*ckey))
                child.inc(cost)
        for a in ctx.attempt_log or ():
            akey = (a.backend, a.model, a.status_code)
            child = self._attempt_children.get(akey)
            if child is None:
                child = self._attempt_children[akey] = self._counter(self.attempts.labels(
                    a.backend, a.model, str(a.status_code) if a.status_code else "none"))
            child.inc()
            if a.error_type and a.error_type != "client_error":
                ekey = (a.backend, a.error_type)
                child = self._error_children.get(ekey)
                if child is None:
                    child = self._error_children[ekey] = self._counter(self.errors.labels(*ekey))
                child.inc()

    def _make_children(self, key: tuple) -> tuple:
        model, operation, provider, backend, status, cache_status, error_type = key
        model_label = model or "none"
        gen = (operation, genai.provider_name(provider) if provider else "none", model_label, backend)
        children = (
            self.duration.labels(*gen, str(status), error_type or "none"),
            self.ttft.labels(*gen),
            self.tokens.labels(*gen, "input"),
            self.tokens.labels(*gen, "output"),
            self.requests.labels(model_label, operation, backend, str(status), cache_status or "none"),
        )
        if len(self._children) < 10_000:  # bounded labels; the cap only guards memory
            bounds = (DURATION_BUCKETS, TTFT_BUCKETS, TOKEN_BUCKETS, TOKEN_BUCKETS)
            if self._defer and all(deferrable(c, (*b, _INF)) for c, b in zip(children, bounds)):
                children = (*(self._track(DeferredHistogram(c, (*b, _INF))) for c, b in zip(children, bounds)),
                            self._counter(children[4]))
            self._children[key] = children
        return children

    def _counter(self, child):
        return self._track(DeferredCounter(child)) if self._defer else child

    def _track(self, series):
        self._deferred.append(series)
        return series

    # --- state read at scrape time ------------------------------------------------------------
    def refresh(self) -> None:
        """Publish the current circuit, sink and config state."""
        health = self._health
        if health is not None:
            seen = set()
            for st in health.all():
                labels = (st.key, st.backend)
                seen.add(labels)
                self.circuit.labels(*labels).set(CIRCUIT_VALUES.get(st.breaker.peek(), 0.0))
                self.target_in_flight.labels(*labels).set(st.inflight)
            for gone in self._circuit_keys - seen:  # targets a reload removed
                for gauge in (self.circuit, self.target_in_flight):
                    try:
                        gauge.remove(*gone)
                    except KeyError:
                        pass
            self._circuit_keys = seen
        sink = self._sink()
        if sink is not None:
            self._refresh_sink(sink.stats())
        fleet = self._fleet()
        if fleet is not None and fleet.scrapers:
            self._refresh_vllm(fleet.scrapers)
        watcher = self._watcher()
        if watcher is not None:
            delta = watcher.reloads - self._reloads_seen
            if delta > 0:
                self.reloads.inc(delta)
                self._reloads_seen = watcher.reloads
            self.reload_error.set(1 if watcher.last_error else 0)
            current = watcher.current.content_hash
        else:
            current = self._config_hash or ""
        self.set_config_hash(current)

    def _refresh_sink(self, stats: dict) -> None:
        if self._sink_metrics is None:
            reg = self._reg
            self._sink_metrics = (
                Counter("llm_gateway_telemetry_records", "Request log records by outcome (written: on disk, "
                        "lost: dropped for a full or failed log).", ["outcome"], registry=reg),
                Gauge("llm_gateway_telemetry_log_bytes", "Bytes in the request log (all writers).",
                      registry=reg, multiprocess_mode="livemax"),
                Gauge("llm_gateway_telemetry_log_full", "1 while the request log is full.",
                      registry=reg, multiprocess_mode="livemax"),
                Gauge("llm_gateway_telemetry_ingest_lag_seconds", "How long records have waited for the "
                      "ingester (0: all ingested).", registry=reg, multiprocess_mode="livemax"),
            )
        records, log_bytes, full, lag = self._sink_metrics
        seen = self._sink_seen
        for name in _SINK_COUNTERS:
            delta = stats[name] - seen[name]
            if delta > 0:
                records.labels(name).inc(delta)
                seen[name] = stats[name]
        log_bytes.set(stats["log_bytes"])
        full.set(1 if stats["full"] else 0)
        lag.set(stats.get("lag_s") or 0.0)

    def _refresh_vllm(self, scrapers: dict) -> None:
        """vLLM ``/metrics`` scrapers (``gateway.vllm``): age of the last good scrape, up/down,
        failures."""
        if self._vllm_metrics is None:
            reg = self._reg
            self._vllm_metrics = (
                Gauge("llm_gateway_vllm_scrape_age_seconds", "Seconds since the last good scrape of a vLLM "
                      "backend's /metrics (-1: none yet).", ["backend"], registry=reg, multiprocess_mode="livemin"),
                Gauge("llm_gateway_vllm_up", "1 while a scraped vLLM backend is in rotation, 0 when held out.",
                      ["backend"], registry=reg, multiprocess_mode="livemax"),
                Counter("llm_gateway_vllm_scrape_failures", "Failed scrapes of a vLLM backend.", ["backend"],
                        registry=reg),
            )
        age, up, failures = self._vllm_metrics
        now = self._health.clock() if self._health is not None else None
        for name, scraper in list(scrapers.items()):
            last = getattr(scraper, "last_ok_at", None)
            age.labels(name).set(-1 if last is None or now is None else max(0.0, now - last))
            up.labels(name).set(0 if getattr(scraper, "up", None) is False else 1)
            count = getattr(scraper, "failures", 0) or 0
            delta = count - self._vllm_failures_seen.get(name, 0)
            if delta > 0:
                failures.labels(name).inc(delta)
            self._vllm_failures_seen[name] = count

    def set_config_hash(self, content_hash: str) -> None:
        if not content_hash or content_hash == self._config_hash:
            return
        if self._config_hash:
            if self.multiprocess:
                self.config_info.labels(self._config_hash).set(0)
            else:
                self.config_info.remove(self._config_hash)
        self._config_hash = content_hash
        self.config_info.labels(content_hash).set(1)

    # --- /metrics ----------------------------------------------------------------------------
    def denied(self, request: web.Request) -> web.Response | None:
        """``None`` when ``request`` may scrape; else a 401/403 (see ``MetricsSettings``)."""
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if token:
            digest = hashlib.sha256(token.encode()).digest()
            admin = self._admin_key()
            for wanted in (self._token_digest, hashlib.sha256(admin.encode()).digest() if admin else None):
                if wanted is not None and hmac.compare_digest(digest, wanted):
                    return None
        if self._token_digest is not None:
            return web.Response(status=401, text="a valid metrics token is required "
                                "(Authorization: Bearer <observability.metrics.bearer_token>)\n")
        remote = (request.remote or "").split("%", 1)[0]
        try:
            addr = ipaddress.ip_address(remote)
        except ValueError:
            addr = None
        if addr is not None and any(addr in net for net in self._allow):
            return None
        return web.Response(status=403, text="/metrics answers observability.metrics.allow_from networks only\n")

    async def handle(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request)) is not None:
            return denied
        self.refresh()
        if self.multiprocess:
            data = await asyncio.to_thread(collect_all)
        else:
            data = generate_latest(self.registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- lifecycle (multiprocess: keep this worker's state gauges fresh) --------------------
    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval_s)
            try:
                self.refresh()
            except Exception:  # never let a metrics bug stop the loop
                log.exception("metrics refresh failed")

    def start(self) -> None:
        self.refresh()
        if self.multiprocess:
            self._task = asyncio.get_running_loop().create_task(self._publish())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.multiprocess:
            mark_process_dead(os.getpid())
