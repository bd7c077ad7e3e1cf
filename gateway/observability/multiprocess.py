"""prometheus-client's multiprocess mode for ``serve --workers N``.

``prepare_multiprocess(dir)`` (called before the workers fork) switches value storage to
per-process files in ``dir``; a scrape of any worker aggregates all of them (``collect_all``:
counters and histograms summed; gauges per their ``multiprocess_mode``);
``mark_process_dead(pid)`` drops a stopped worker's live gauges.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import values as _values

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_active() -> bool:
    """Whether prometheus-client stores values in per-process files (multiprocess mode)."""
    return bool(getattr(_values.ValueClass, "_multiprocess", False)) and bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess(path: str) -> str:
    """Switch this process (and the workers it forks) to multiprocess mode with files in
    ``path`` (created; stale files from an earlier run removed). Call before any worker builds
    its application."""
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    os.environ[MULTIPROC_ENV] = path
    if not getattr(_values.ValueClass, "_multiprocess", False):
        _values.ValueClass = _values.MultiProcessValue()
    return path


def mark_process_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (in-flight, circuit state) from the aggregate."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid, path)


def collect_all() -> bytes:
    """The text exposition of every worker's values (reads the files: run it off the loop)."""
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, os.environ[MULTIPROC_ENV])
    return generate_latest(registry)
