"""Build a tiny random-weight Llama model, fully offline, for the real-vLLM tests.

Run it with the vLLM venv's python (it needs torch, tokenizers, transformers):

    $VLLM_PYTHON loadtest/vllm_tiny_model.py OUTPUT_DIR

The model: 2 layers, hidden 256, 4 heads of size 64, a byte-level BPE
vocabulary of 2048 trained with `tokenizers` on this interpreter's own standard
library sources (nothing is downloaded), a ChatML-style Jinja chat template
stored in tokenizer_config.json, and seeded random weights saved as
safetensors by transformers.  A few MB on disk; builds in seconds.

Idempotent: if OUTPUT_DIR already holds a complete build of the same recipe
(see BUILD_STAMP) it does nothing.  The build goes to a temporary sibling
directory that is renamed into place at the end, so an interrupted build never
leaves a half-written model behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

# Bump when the recipe changes so that cached builds are rebuilt.
RECIPE_VERSION = 1
STAMP_FILE = ".tiny-llama-build.json"

VOCAB_SIZE = 2048
HIDDEN = 256
LAYERS = 2
HEADS = 4
HEAD_DIM = 64
INTERMEDIATE = 512
MAX_POSITIONS = 2048
SEED = 1234
CORPUS_BYTES = 4_000_000

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [BOS, EOS, PAD, IM_START, IM_END]

# ChatML-style template. Content may be a plain string or a list of OpenAI
# content parts ({"type": "text", "text": ...}); only text parts are kept.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] is not none %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

BUILD_STAMP = {
    "recipe": RECIPE_VERSION,
    "vocab_size": VOCAB_SIZE,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "head_dim": HEAD_DIM,
    "seed": SEED,
}


def log(msg: str) -> None:
    print(f"[build_tiny_model] {msg}", flush=True)


def is_built(out: Path) -> bool:
    stamp = out / STAMP_FILE
    if not stamp.is_file():
        return False
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return all(data.get(k) == v for k, v in BUILD_STAMP.items())


def corpus_files() -> list[Path]:
    """Local training text: the standard library's .py sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file())
    if not files:
        raise SystemExit(f"no .py files found under {stdlib}")
    return files


def iter_corpus():
    """Some generated chat-ish lines, then stdlib sources (ASCII only)."""
    total = 0
    generated = [
        "Hello! How can I help you today?",
        "The quick brown fox jumps over the lazy dog.",
        "user assistant system hello world say something",
    ] * 200
    for line in generated:
        total += len(line)
        yield line
    for path in corpus_files():
        try:
            text = path.read_text(encoding="utf-8", errors="ignore")
        except OSError:
            continue
        # ASCII only: every merged token then decodes to whole characters,
        # so generated text never holds broken UTF-8 sequences.
        text = text.encode("ascii", "ignore").decode("ascii")
        yield text
        total += len(text)
        if total >= CORPUS_BYTES:
            return


NEEDS_VENV = ("this builder needs torch, tokenizers and transformers: run it with the vLLM venv's python "
              "(bash tests/vllm/setup_venv.sh): {}")


def build_tokenizer(workdir: Path):
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:  # run with the test interpreter instead of the vLLM venv's
        raise SystemExit(NEEDS_VENV.format(exc)) from None

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(iter_corpus(), trainer=trainer)
    log(f"tokenizer trained: vocab {tok.get_vocab_size()}")

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(workdir)

    # Keep the chat template inside tokenizer_config.json (newer transformers
    # write it to a separate chat_template.jinja; both are understood).
    cfg_path = workdir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg.setdefault("add_bos_token", False)
    # transformers 5 writes "TokenizersBackend"; the v4-era name loads with both.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    jinja = workdir / "chat_template.jinja"
    if jinja.exists():
        jinja.unlink()
    return fast


def byte_level_chars() -> dict[str, int]:
    """The GPT-2 byte-to-unicode table used by ByteLevel, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def unprintable_token_ids(tokenizer) -> list[int]:
    byte_of = byte_level_chars()
    ok = set(range(32, 127)) | {9, 10}
    bad = []
    for token, idx in tokenizer.get_vocab().items():
        if token in SPECIAL_TOKENS or any(byte_of.get(ch, -1) not in ok for ch in token):
            bad.append(idx)
    return sorted(bad)


def build_model(workdir: Path, tokenizer) -> None:
    try:
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    except ImportError as exc:  # run with the test interpreter instead of the vLLM venv's
        raise SystemExit(NEEDS_VENV.format(exc)) from None

    torch.manual_seed(SEED)
    vocab = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    # Make the output distribution peaked (logit std ~8), and give every token
    # that does not decode to printable ASCII (lone high bytes, control bytes,
    # special tokens) a zero output row, i.e. logit 0, far below the best
    # printable token.  So even sampled output is clean text.
    bad = unprintable_token_ids(tokenizer)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
        model.lm_head.weight[bad] = 0.0
    log(f"{len(bad)} of {vocab} tokens can never win (unprintable or special)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f}M parameters")
    model.save_pretrained(workdir, safe_serialization=True)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(workdir)


def smoke_test(workdir: Path) -> None:
    """Load what was written with transformers and run one forward pass."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # run with the test interpreter instead of the vLLM venv's
        raise SystemExit(NEEDS_VENV.format(exc)) from None

    tok = AutoTokenizer.from_pretrained(workdir)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(workdir)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    text = tok.decode(out[0, ids.shape[1]:])
    log(f"smoke test: prompt {prompt!r} -> {ids.shape[1]} tokens, greedy continuation {text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--force", action="store_true", help="rebuild even if already built")
    args = parser.parse_args(argv)

    out: Path = args.output_dir.expanduser().resolve()
    if not args.force and is_built(out):
        log(f"already built: {out}")
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    t0 = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        tokenizer = build_tokenizer(work)
        build_model(work, tokenizer)
        smoke_test(work)
        (work / STAMP_FILE).write_text(json.dumps(BUILD_STAMP, indent=2) + "\n")
        work.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    log(f"built {out} ({size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
