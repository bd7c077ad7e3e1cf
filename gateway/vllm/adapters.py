"""Keeps the LoRA adapters of the config loaded on the vLLM servers that serve their base model.

One task per ``type: vllm`` backend that has adapters (``adapters_of_backends``): it reads
``GET /v1/models`` (vLLM lists loaded adapters there, with their path as ``root``) and loads
what is missing or serves another path (``POST /v1/load_lora_adapter``, in place when the name
is loaded already: a promoted version replaces the old one under the same name without a gap).
Adapters an earlier config of this gateway loaded and the current one dropped are unloaded
(``POST /v1/unload_lora_adapter``). The server must allow it: ``--enable-lora`` and
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (managed servers get both).

A failure is retried with backoff; once all is loaded it checks again every ``RECHECK_S``
(a restarted server has lost its runtime adapters). A reload wakes it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import orjson

from gateway.config.adapters import adapters_of_backends
from gateway.config.models import Backend, GatewayConfig

log = logging.getLogger("gateway.vllm")

RECHECK_S = 10.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
_TIMEOUT = aiohttp.ClientTimeout(total=120)  # loading reads the weights: not instant on a big adapter


def backend_spec(b: Backend) -> tuple:
    """What the task of a backend depends on: a change replaces the task."""
    return (b.base_url, b.api_key, tuple(sorted(b.headers.items())))


class BackendAdapters:
    """The adapters one server must serve (``wanted``: name → path) and where each stands."""

    def __init__(self, name: str, backend: Backend, session_of: Callable[[], aiohttp.ClientSession],
                 ready: Callable[[], bool] = lambda: True):
        self.name = name
        self._ready = ready
        self.spec = backend_spec(backend)
        self._base = (backend.base_url or "").rstrip("/")
        headers = dict(backend.headers)
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        self._headers = headers
        self._session_of = session_of
        self.wanted: dict[str, str] = {}
        self.states: dict[str, str] = {}
        self._ours: set[str] = set()  # names this gateway loaded: the only ones it unloads
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def set_wanted(self, wanted: dict[str, str]) -> None:
        if wanted != self.wanted:
            self.wanted = dict(wanted)
            self.states = {n: s for n, s in self.states.items() if n in wanted}
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"vllm-adapters-{self.name}")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        backoff = BACKOFF_INITIAL_S
        while True:
            self._wake.clear()
            if not self._ready():  # down or starting: try again soon, without growing the backoff
                await self._sleep(BACKOFF_INITIAL_S)
                continue
            try:
                ok = await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the task die: report and retry
                log.exception("vLLM backend %r: adapter sync failed", self.name)
                self._fail_pending(f"{type(exc).__name__}: {exc}")
                ok = False
            delay = RECHECK_S if ok else backoff
            backoff = BACKOFF_INITIAL_S if ok else min(BACKOFF_MAX_S, backoff * 2)
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less when a reload wakes the task."""
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    def _fail_pending(self, reason: str) -> None:
        for n in self.wanted:
            if self.states.get(n) != "loaded":
                self.states[n] = f"failed: {reason}"

    async def _reconcile(self) -> bool:
        wanted = dict(self.wanted)
        try:
            served = await self._served()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._fail_pending(f"cannot list models: {type(exc).__name__}: {exc}"[:300])
            return False
        ok = True
        for name, path in wanted.items():
            if served.get(name) == path:
                self.states[name] = "loaded"
                continue
            self.states[name] = "loading"
            body: dict[str, object] = {"lora_name": name, "lora_path": path}
            if name in served:
                body["load_inplace"] = True
            error = await self._post("load_lora_adapter", body)
            if self.wanted.get(name) != path:  # a reload changed it meanwhile: the next round decides
                continue
            if error is None:
                self.states[name] = "loaded"
                self._ours.add(name)
                log.info("vLLM backend %r: loaded adapter %r from %s", self.name, name, path)
            else:
                self.states[name] = f"failed: {error}"
                log.warning("vLLM backend %r: cannot load adapter %r: %s", self.name, name, error)
                ok = False
        for name in sorted(self._ours - wanted.keys()):
            if name not in served:
                self._ours.discard(name)
                continue
            error = await self._post("unload_lora_adapter", {"lora_name": name})
            if error is None:
                self._ours.discard(name)
                log.info("vLLM backend %r: unloaded adapter %r", self.name, name)
            else:
                log.warning("vLLM backend %r: cannot unload adapter %r: %s", self.name, name, error)
                ok = False
        return ok

    async def _served(self) -> dict[str, str]:
        """Model id → root (an adapter's path) as the server lists them."""
        async with self._session_of().get(f"{self._base}/models", headers=self._headers, timeout=_TIMEOUT,
                                          allow_redirects=False) as resp:
            if resp.status != 200:
                raise ValueError(f"GET /v1/models answered HTTP {resp.status}")
            doc = await resp.json(content_type=None)
        return {str(m.get("id")): str(m.get("root") or "") for m in doc.get("data", []) if isinstance(m, dict)}

    async def _post(self, path: str, body: dict) -> str | None:
        """None when the server did it, else why not."""
        try:
            async with self._session_of().post(f"{self._base}/{path}", json=body, headers=self._headers,
                                               timeout=_TIMEOUT, allow_redirects=False) as resp:
                if resp.status == 200:
                    return None
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if resp.status == 404:
            text = "the server has no runtime LoRA endpoints (start it with --enable-lora and " \
                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"
        return f"HTTP {resp.status}: {error_message(text)}"[:300]

    def status(self) -> dict[str, str]:
        return {n: self.states.get(n, "loading") for n in sorted(self.wanted)}


def error_message(text: str) -> str:
    """The error message of a vLLM error body (``{"error": {"message"}}`` or ``{"message"}``)."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()
    if isinstance(doc, dict):
        inner = doc["error"] if isinstance(doc.get("error"), dict) else doc
        message = inner.get("message")
        if isinstance(message, str):
            return message
    return text.strip()


class AdapterReconciler:
    """The per-backend adapter tasks, kept in step with the config (``sync``)."""

    def __init__(self, session_of: Callable[[], aiohttp.ClientSession],
                 ready: Callable[[str], bool] = lambda name: True):
        self._session_of = session_of
        self._ready = ready
        self.backends: dict[str, BackendAdapters] = {}

    def sync(self, cfg: GatewayConfig) -> None:
        wanted = adapters_of_backends(cfg)
        for name in list(self.backends):
            b = cfg.backends.get(name)
            if b is None or b.type != "vllm" or self.backends[name].spec != backend_spec(b):
                self.backends.pop(name).close()
        for name, adapters in wanted.items():
            entry = self.backends.get(name)
            if entry is None:
                entry = self.backends[name] = BackendAdapters(name, cfg.backends[name], self._session_of,
                                                              ready=self._ready_of(name))
                entry.start()
            entry.set_wanted({a_name: a.path for a_name, a in adapters.items()})
        for name, entry in self.backends.items():
            if name not in wanted:  # its adapters were dropped: the task unloads them
                entry.set_wanted({})

    def _ready_of(self, name: str) -> Callable[[], bool]:
        return lambda: self._ready(name)

    def stop(self) -> None:
        for entry in self.backends.values():
            entry.close()
        self.backends.clear()

    def status(self, backend: str) -> dict[str, str] | None:
        entry = self.backends.get(backend)
        return entry.status() if entry is not None and entry.wanted else None
