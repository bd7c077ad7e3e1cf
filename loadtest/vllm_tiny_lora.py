"""Build a tiny LoRA adapter for the tiny test model (``vllm_tiny_model.py``), offline.

Run with the vLLM venv's python (it has torch and safetensors)::

    python loadtest/vllm_tiny_lora.py OUT_DIR [--seed N] [--rank R]

Writes ``adapter_config.json`` (PEFT's LoRA format, as vLLM reads it) and
``adapter_model.safetensors`` with ``lora_A``/``lora_B`` for ``q_proj`` and ``v_proj`` of each
layer, shaped for the tiny model (hidden 256, 4 heads of 64, 2 layers). ``lora_B`` is not zero
(as a trained adapter's is not), so the adapter changes what the model says; different seeds
give different adapters (versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HIDDEN, LAYERS, HEADS, HEAD_DIM = 256, 2, 4, 64  # as vllm_tiny_model.py builds the model
TARGETS = ("q_proj", "v_proj")


def build(out: Path, seed: int, rank: int) -> Path:
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as exc:  # run with the test interpreter instead of the vLLM venv's
        raise SystemExit(f"this builder needs torch and safetensors: run it with the vLLM venv's python ({exc})") \
            from None

    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module in TARGETS:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, HIDDEN, generator=gen) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(HEADS * HEAD_DIM, rank, generator=gen) * 0.5
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.0,
        "target_modules": list(TARGETS), "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "use_rslora": False, "use_dora": False, "base_model_name_or_path": "tiny-llama"}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args(argv)
    print(build(args.out, args.seed, args.rank))
    return 0


if __name__ == "__main__":
    sys.exit(main())
