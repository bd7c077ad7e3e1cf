"""Profile the gateway under load with py-spy and list its hot spots.

``python -m loadtest profile --seconds 15 [--stream] [--config PATH]`` starts the fake upstream
and the gateway (pinned like the bench), drives a closed loop from this process, and runs
``py-spy record --format raw --gil --nonblocking`` on the gateway for the same seconds (``--gil``:
only the thread holding the GIL is sampled, i.e. where Python spends the core; idle threads and
C code running without the GIL, such as chDB's insert, are left out; ``--nonblocking``: the
process is not paused to sample, so it runs at full speed). The collapsed stacks are
folded into two tables: self time by function (where the CPU is actually spent, any module)
and inclusive time of the gateway's own functions (``gateway/…``). ``--bare`` profiles the bare proxy
instead (the yardstick), for the same tables. Files: ``OUT/pyspy.txt``
(collapsed stacks: feed them to flamegraph.pl or speedscope), ``OUT/hotspots.md``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from loadtest.bench import HERE
from loadtest.generator import Step, run_async, run_step
from loadtest.httpclient import Target
from loadtest.procs import ManagedProcess, free_port, parse_cpus, pin_self, python_argv
from loadtest.report import step_line
from loadtest.scenario import RequestFactory, load_scenario

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


@dataclass
class ProfileOptions:
    config: str | None = None
    seconds: float = 15.0
    stream: bool = False
    out_dir: Path = Path("bench-results/profile")
    gateway_cpus: str = "0"
    load_cpus: str = "1"
    top: int = 25
    concurrency: int = 32
    rate_hz: int = 250
    all_threads: bool = False   # sample every non-idle thread, not only the GIL holder
    bare: bool = False          # profile the bare proxy instead of the gateway (the yardstick)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib/python3.") and "/" in tail else tail
    for marker in ("/gateway/", "/loadtest/"):
        if marker in path:
            return marker.strip("/") + "/" + path.split(marker, 1)[1]
    return path


def fold(collapsed: str) -> tuple[Counter, Counter, Counter, int]:
    """Collapsed stacks (``a;b;c N`` lines) → (self by function, inclusive by function,
    self by module, total samples). Functions are ``name (file)``, files shortened."""
    self_t: Counter = Counter()
    incl: Counter = Counter()
    by_module: Counter = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for frame in stack.split(";"):
            m = _FRAME.match(frame.strip())
            frames.append(f"{m['func']} ({_short(m['file'])})" if m else frame.strip())
        if not frames:
            continue
        leaf = frames[-1]
        self_t[leaf] += n
        module = leaf[leaf.rfind("(") + 1:-1] if leaf.endswith(")") else leaf
        by_module[module] += n
        for f in set(frames):
            incl[f] += n
    return self_t, incl, by_module, total


def hotspots_markdown(collapsed: str, top: int = 25) -> str:
    self_t, incl, by_module, total = fold(collapsed)
    if not total:
        return "no samples\n"

    def table(title: str, counter: Counter, pred=lambda k: True) -> str:
        rows = [f"### {title}", "", "| % of samples | function (file) |", "|---:|---|"]
        for name, n in [(k, v) for k, v in counter.most_common() if pred(k)][:top]:
            rows.append(f"| {n / total:.1%} | `{name}` |")
        return "\n".join(rows)

    own = lambda k: "(gateway/" in k  # noqa: E731
    return "\n\n".join([
        f"{total} samples.",
        table("Self time by function (all code)", self_t),
        table("Self time by file", by_module),
        table("Inclusive time, the gateway's own functions", incl, own),
        table("Self time, the gateway's own functions", self_t, own),
    ]) + "\n"


def run_profile(opts: ProfileOptions) -> int:
    if not shutil.which("py-spy"):
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    pin_self(parse_cpus(opts.load_cpus))
    up_port, gw_port = free_port(), free_port()
    upstream = ManagedProcess("fake-upstream", python_argv("-m", "loadtest", "fake-upstream", "--port", str(up_port)),
                              url=f"http://127.0.0.1:{up_port}", ready_url=f"http://127.0.0.1:{up_port}/health",
                              cpus=opts.load_cpus, log_path=out / "fake-upstream.log")
    config = opts.config or str(HERE / "configs" / "features-on.yaml")
    data_dir = (out / "data").resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    if opts.bare:
        argv = python_argv("-m", "loadtest", "bare-proxy", "--port", str(gw_port),
                           "--upstream", f"http://127.0.0.1:{up_port}")
        ready, config = f"http://127.0.0.1:{gw_port}/health", "(bare proxy)"
    else:
        argv = python_argv("-m", "gateway", "serve", "--config", config, "--port", str(gw_port))
        ready = f"http://127.0.0.1:{gw_port}/readyz"
    gateway = ManagedProcess("gateway", argv, url=f"http://127.0.0.1:{gw_port}", ready_url=ready,
                             cpus=opts.gateway_cpus, log_path=out / "gateway.log", cwd=str(HERE.parent),
                             env={"LOADTEST_UPSTREAM_URL": f"http://127.0.0.1:{up_port}",
                                  "LOADTEST_DATA_DIR": str(data_dir)})
    try:
        upstream.start().wait_ready()
        gateway.start().wait_ready()
        scenario = load_scenario("chat-stream" if opts.stream else "chat-json")
        target = Target.parse(gateway.url + "/v1", scenario.endpoint)
        raw = out / "pyspy.txt"
        spy_argv = ["py-spy", "record", "--pid", str(gateway.pid), "--duration", str(int(opts.seconds)),
                    "--rate", str(opts.rate_hz), "--format", "raw", "--output", str(raw),
                    "--nonblocking", "--full-filenames", *([] if opts.all_threads else ["--gil"])]
        if opts.load_cpus:
            spy_argv = ["taskset", "-c", opts.load_cpus, *spy_argv]

        async def main() -> dict:
            await run_step(target, RequestFactory(scenario), Step("closed", 2.0, 0.5, concurrency=opts.concurrency),
                           progress=False)
            spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            await asyncio.sleep(1.0)  # py-spy attaches
            result = await run_step(target, RequestFactory(scenario),
                                    Step("closed", opts.seconds - 1.0, 0.0, concurrency=opts.concurrency),
                                    probe=gateway.probe(), progress=False)
            await asyncio.get_running_loop().run_in_executor(None, spy.wait)
            if spy.returncode:
                print(spy.stderr.read().decode(errors="replace"), file=sys.stderr)
            return result

        result = run_async(main())
    finally:
        gateway.stop()
        upstream.stop()
    print(f"load while profiling: {step_line(result)}", file=sys.stderr)
    collapsed = raw.read_text() if raw.exists() else ""
    md = (f"# py-spy profile of the gateway ({'streamed' if opts.stream else 'JSON'} chat, closed loop "
          f"{'all threads, ' if opts.all_threads else 'GIL holder only, '}"
          f"c={opts.concurrency}, {opts.seconds:g} s, config {Path(config).name})\n\n"
          f"Load while profiling: {step_line(result)}\n\n" + hotspots_markdown(collapsed, opts.top))
    (out / "hotspots.md").write_text(md)
    print(md)
    return 0
