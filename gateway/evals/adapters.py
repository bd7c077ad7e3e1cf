"""``ADAPTER@VERSION`` candidates: a version of a LoRA adapter of the config (``adapters:``),
evaluated without changing what production traffic gets.

The version's path is loaded on every vLLM server of the adapter (``adapters_of_backends``)
under a temporary name of its own, ``NAME--vVERSION--eval-XXXXXX`` (the adapter's name, dashes,
letters and digits: nothing a server could read as anything but a name); the eval's config
snapshot gets a transient public model of that name whose targets are those servers, and the
candidate's calls go to it. The adapter's own name keeps serving the promoted version, and a
running gateway's reconciler unloads only the adapters it loaded, so it leaves the temporary one
alone. The candidate is recorded as ``NAME@VERSION`` (promotion gates under that key find the
run). The temporary adapter is unloaded when the run ends, failed or interrupted too; that is
best effort: a server that cannot be reached then is reported, its adapter stays loaded.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNLOAD_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 120.0  # loading reads the weights: not instant on a big adapter


class AdapterLoadError(RuntimeError):
    """A server refused (or could not be asked) to load a candidate's temporary adapter."""


@dataclass(frozen=True)
class AdapterVersion:
    """``name@version`` of adapter ``name`` (its ``path``), served as ``served`` on ``backends``."""

    name: str
    version: int
    path: str
    served: str
    backends: tuple[str, ...]


def adapter_version(cfg: Any, name: str, version: int) -> AdapterVersion:
    """Version ``version`` (one of its ``versions``) of the configured adapter ``name``."""
    from gateway.config.adapters import adapters_of_backends

    backends = tuple(sorted(b for b, wanted in adapters_of_backends(cfg).items() if name in wanted))
    served = f"{name}--v{version}--eval-{secrets.token_hex(3)}"
    return AdapterVersion(name, version, cfg.adapters[name].versions[version], served, backends)


def with_adapter_models(snapshot: Any, versions: list[AdapterVersion]) -> Any:
    """``snapshot`` (a ``ConfigSnapshot``) with a transient public model per version: its
    temporary name, on the adapter's servers. The config file is left as it is."""
    if not versions:
        return snapshot
    from gateway.config.models import PublicModel, Target

    cfg = snapshot.config
    models = dict(cfg.models)
    for v in versions:
        models[v.served] = PublicModel(targets=[Target(backend=b, model=v.served) for b in v.backends])
    return dataclasses.replace(snapshot, config=cfg.model_copy(update={"models": models}))


class TemporaryAdapters:
    """Context manager: loads each version on its servers on entry (``AdapterLoadError`` when a
    server refuses: those already loaded are unloaded first), unloads them on exit; ``warn`` is
    told of an unload that failed."""

    def __init__(self, cfg: Any, versions: list[AdapterVersion], warn: Callable[[str], None]):
        self._backends = cfg.backends
        self._versions = versions
        self._warn = warn
        self._loaded: list[tuple[str, str]] = []

    def __enter__(self) -> TemporaryAdapters:
        try:
            for v in self._versions:
                for b in v.backends:
                    error = self._post(b, "load_lora_adapter", {"lora_name": v.served, "lora_path": v.path},
                                       LOAD_TIMEOUT_S)
                    if error is not None:
                        raise AdapterLoadError(f"candidate {v.name}@{v.version}: vLLM backend {b!r} cannot load "
                                               f"{v.path} (as {v.served}): {error}")
                    self._loaded.append((b, v.served))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for b, served in reversed(self._loaded):
            error = self._post(b, "unload_lora_adapter", {"lora_name": served}, UNLOAD_TIMEOUT_S)
            if error is not None:
                self._warn(f"vLLM backend {b!r}: the temporary adapter {served} could not be unloaded: {error}")
        self._loaded.clear()

    def _post(self, backend: str, path: str, body: dict, timeout: float) -> str | None:
        """None when the server did it, else why not."""
        import httpx

        from gateway.vllm.adapters import error_message

        b = self._backends[backend]
        headers = dict(b.headers)
        if b.api_key:
            headers["Authorization"] = f"Bearer {b.api_key}"
        try:
            resp = httpx.post(f"{(b.base_url or '').rstrip('/')}/{path}", json=body, headers=headers,
                              timeout=timeout, trust_env=False)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if resp.status_code == 200:
            return None
        if resp.status_code == 404 and path == "load_lora_adapter":
            return ("the server has no runtime LoRA endpoints (start it with --enable-lora and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)")
        return f"HTTP {resp.status_code}: {error_message(resp.text)}"[:300]


__all__ = ["AdapterLoadError", "AdapterVersion", "TemporaryAdapters", "adapter_version", "with_adapter_models"]
