"""Start and stop a real vLLM OpenAI-compatible server (CPU build) for the real-vLLM tests and
the vLLM fleet benchmark (``loadtest.vllm_fleet``).

Standard library only, so it runs under the test interpreter, which does not have vLLM
installed: vLLM runs in its own virtualenv (``bash tests/vllm/setup_venv.sh`` in a checkout)
and is started as a subprocess.

Environment:
  VLLM_PYTHON      python of the vLLM venv
                   (default: $VLLM_VENV/bin/python, VLLM_VENV defaulting to
                   $HOME/.cache/llm-gateway/vllm-venv)
  VLLM_MODEL_DIR   where the tiny model is built/cached
                   (default: $HOME/.cache/llm-gateway/tiny-llama)
  VLLM_STARTUP_TIMEOUT  seconds to wait for readiness (default 240)

Manual use, e.g. while developing against vLLM directly:

  python -m loadtest.vllm_server --port 8000     # builds the model, serves until Ctrl-C
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "vllm_tiny_model.py"
SETUP_SCRIPT = "tests/vllm/setup_venv.sh"  # in a checkout of the repository
SERVED_MODEL_NAME = "tiny-llama"

# Flags found by running this vLLM CPU build against the tiny model:
#  --enforce-eager      no torch.compile (slow to start, needs a C++ toolchain)
#  --dtype float32      the checkpoint's dtype; vLLM would otherwise downcast to
#                       bfloat16 on CPU, which is fast only with AVX512-BF16/AMX
#  --max-model-len 1024 / --max-num-seqs 16  keep memory and warm-up small
VLLM_ARGS = [
    "--enforce-eager",
    "--dtype", "float32",
    "--max-model-len", "1024",
    "--max-num-seqs", "16",
    "--seed", "0",
]

VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache (default would be far more)
    "VLLM_HOST_IP": "127.0.0.1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # vLLM otherwise reports usage statistics to a remote server.
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


class ServerError(RuntimeError):
    """A server did not start; the message carries the tail of its log."""


def default_cache_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".cache" / "llm-gateway"


def vllm_python() -> Path:
    """Path of the vLLM venv's python (may not exist)."""
    if os.environ.get("VLLM_PYTHON"):
        return Path(os.environ["VLLM_PYTHON"]).expanduser()
    venv = os.environ.get("VLLM_VENV") or str(default_cache_dir() / "vllm-venv")
    return Path(venv).expanduser() / "bin" / "python"


def model_dir() -> Path:
    return Path(os.environ.get("VLLM_MODEL_DIR") or default_cache_dir() / "tiny-llama").expanduser()


def startup_timeout() -> float:
    return float(os.environ.get("VLLM_STARTUP_TIMEOUT", "240"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# Log lines left out of tails: vLLM lists its ~40 routes at every start.
TAIL_SKIP = ("[launcher.py:195] Route: ",)


def tail(path: Path, lines: int = 150) -> str:
    try:
        data = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    data = [line for line in data if not any(s in line for s in TAIL_SKIP)]
    return "\n".join(data[-lines:])


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def build_model(python: Path | None = None, out: Path | None = None) -> Path:
    """Build the tiny model with the vLLM venv's python (no-op if cached)."""
    python = python or vllm_python()
    out = out or model_dir()
    env = dict(os.environ, **{k: VLLM_ENV[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})
    proc = subprocess.run(
        # -P: not the script's folder first on sys.path, where a module named like one of the
        # standard library's would shadow it in the vLLM interpreter (torch imports a lot of them).
        [str(python), "-P", str(BUILD_SCRIPT), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError(f"building the tiny model failed (exit {proc.returncode}):\n{proc.stdout}")
    return out


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGTERM the child if the test process dies
    (e.g. pytest killed by a CI timeout), so no server is left orphaned."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux, or no prctl: best effort only
        pass


class ManagedProcess:
    """A subprocess in its own session, with its output in a log file.

    stop() sends SIGTERM to the process group (vLLM forks an engine core and
    a worker process), then SIGKILL after a grace period.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_after: float | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout: float) -> float:
        """Poll check() until it returns True; fail early if the process dies."""
        assert self.proc is not None
        deadline = self.started_at + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.proc.returncode} before becoming ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                if check():
                    self.ready_after = time.monotonic() - self.started_at
                    return self.ready_after
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.name} not ready after {timeout:.0f}s; log {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            time.sleep(0.5)

    def stop(self, grace: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Leftovers in the group (or a hung main process) get SIGKILL.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return self.proc.returncode


class VLLMServer(ManagedProcess):
    def __init__(self, log_path: Path, model: Path | None = None, port: int | None = None,
                 python: Path | None = None, extra_args: Sequence[str] = ()):
        self.python = python or vllm_python()
        self.model = model or model_dir()
        self.port = port or free_port()
        self.host = "127.0.0.1"
        argv = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model),
            "--served-model-name", SERVED_MODEL_NAME,
            "--host", self.host,
            "--port", str(self.port),
            *VLLM_ARGS,
            *extra_args,
        ]
        super().__init__("vLLM", argv, log_path, env=dict(os.environ, **VLLM_ENV))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _ready(self) -> bool:
        status, body = http_get(self.host, self.port, "/v1/models")
        if status != 200:
            return False
        ids = [m.get("id") for m in json.loads(body).get("data", [])]
        return SERVED_MODEL_NAME in ids

    def wait(self, timeout: float | None = None) -> float:
        return self.wait_ready(self._ready, startup_timeout() if timeout is None else timeout)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Serve the tiny model with vLLM until interrupted.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log", type=Path, default=Path("vllm-server.log"))
    args = parser.parse_args(argv)
    python = vllm_python()
    if not python.exists():
        print(f"vLLM python {python} not found; run: bash {SETUP_SCRIPT}", file=sys.stderr)
        return 2
    build_model(python)
    # Turn SIGTERM into KeyboardInterrupt so that the finally below stops vLLM.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = VLLMServer(args.log, port=args.port, python=python).start()
    try:
        secs = server.wait()
        print(f"vLLM ready at {server.base_url} after {secs:.1f}s "
              f"(RSS {tree_rss_bytes(server.pid) / 2**20:.0f} MiB); log {args.log}; Ctrl-C stops it")
        while server.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
