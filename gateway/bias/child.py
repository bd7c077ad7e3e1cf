"""The disparity tests in a child process: ``python -m gateway.bias.child`` reads the tests as
JSON on stdin (``[{"kind", "groups"}, …]``, see ``stats.run_tests``) and writes their results
as JSON on stdout. The dashboard's Bias panel runs them so, because the serving process must
never load scipy or numpy (their import alone takes tens of MB and ~0.5 s); the CLI runs them
in its own process (``stats.run_tests``).
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence

import orjson

TIMEOUT_S = 60.0


def run_in_child(tests: Sequence[dict], timeout: float = TIMEOUT_S) -> list[dict]:
    """``stats.run_tests(tests)`` computed by a child process (blocking: call it off the loop)."""
    if not tests:
        return []
    done = subprocess.run([sys.executable, "-m", "gateway.bias.child"], input=orjson.dumps(list(tests)),
                          capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"the bias statistics failed: {reason[-1] if reason else done.returncode}")
    return orjson.loads(done.stdout)


def main() -> None:
    from gateway.bias.stats import run_tests

    tests = orjson.loads(sys.stdin.buffer.read())
    # ±inf (constant segments that differ) is not JSON: as a string, which float() reads back
    out = [{k: (str(v) if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()}
           for r in run_tests(tests)]
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    main()
