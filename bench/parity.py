"""Parity of the C runtime with PyTorch on a compressed real model: perplexity, greedy continuations, tokenization.

The same compressed model two ways: the checkpoint as a fake-quantized transformers model (PyTorch, float32) and
its GGUF export run by libpbs2p. The export stores the token embedding (and the tied head) in float16, so the
PyTorch model's embedding is rounded to float16 first: both then hold exactly the same weights, and every
difference comes from float32 summation order (kernels, attention, head).

    python bench/parity.py --checkpoint CK --gguf CK.gguf --out bench/results     # writes OUT/parity.md, .json

1. Perplexity: `pbs2p-run --perplexity` (the C CLI, on the text written to a file) against
   pbs2p_edge.model.perplexity on the PyTorch model, the same ctx-token windows of the same ids.
2. Greedy: 64 tokens after each prompt, C (Model.generate, eos ignored) against PyTorch (arg-max of the
   logits, KV cache); at the first difference, both engines' top-2 logit margins tell a near-tie (fp rounding
   of two almost equal logits) from a real disagreement.
3. Tokenization: the C tokenizer of the file against the checkpoint's Hugging Face tokenizer on a whole novel.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "It is a truth universally acknowledged,",
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "Emma Woodhouse, handsome, clever, and rich,",
    "The three laws of thermodynamics are",
]


def torch_greedy(model, ids: list[int], n: int):
    """n arg-max tokens after ids with the KV cache; also the top-2 margin of every step's logits."""
    import torch

    out, margins = [], []
    with torch.no_grad():
        res = model(input_ids=torch.tensor([ids]), use_cache=True)
        for _ in range(n):
            logits = res.logits[0, -1].float()
            top = torch.topk(logits, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            res = model(input_ids=torch.tensor([[out[-1]]]), past_key_values=res.past_key_values, use_cache=True)
    return out, margins


def c_margins(cmodel, ids: list[int], generated: list[int]) -> list[float]:
    """Top-2 logit margins of the C model along its own greedy path."""
    import numpy as np

    cmodel.reset()
    logits = cmodel.eval(ids, 0, last_only=True)
    margins = []
    for i, tok in enumerate(generated):
        top = np.sort(logits)[-2:]
        margins.append(float(top[1] - top[0]))
        logits = cmodel.eval([tok], len(ids) + i, last_only=True)
    return margins


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--gguf", required=True, type=Path)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--data", default="austen:prideprejudice")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--windows", type=int, default=8, help="perplexity windows (the first ones)")
    p.add_argument("--n", type=int, default=64, help="greedy tokens per prompt")
    p.add_argument("--novel", default="austen:emma", help="text whose whole tokenization is compared")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from pbs2p_edge.calib.text import load_text
    from pbs2p_edge.calib.tokens import encode
    from pbs2p_edge.checkpoint import to_fake_quant_model
    from pbs2p_edge.model.perplexity import perplexity
    from pbs2p_edge.runtime import Model

    torch.set_num_threads(args.threads)
    model, tokenizer = to_fake_quant_model(args.checkpoint)
    emb = model.get_input_embeddings().weight
    emb.data = emb.data.half().float()  # the GGUF's F16 embedding (tied head included)
    if not model.config.tie_word_embeddings:
        head = model.get_output_embeddings().weight
        head.data = head.data.half().float()
    model.eval()
    cmodel = Model(args.gguf, n_threads=args.threads, n_ctx=max(args.ctx, 256))
    result: dict = {"checkpoint": str(args.checkpoint), "gguf": str(args.gguf), "threads": args.threads}

    # 1. perplexity: the C CLI on a file holding the text, PyTorch on the HF tokenizer's ids of the same text
    text = load_text(args.data, split="test")
    cli = shutil.which("pbs2p-run")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.txt"
        path.write_text(text, encoding="utf-8")
        t0 = time.perf_counter()
        if cli:
            done = subprocess.run([cli, "-m", str(args.gguf), "--perplexity", str(path), "--ctx", str(args.ctx),
                                   "--max-windows", str(args.windows), "-t", str(args.threads), "--json"],
                                  capture_output=True, text=True, check=True)
            c_ppl = json.loads(done.stdout)
        else:
            r = cmodel.perplexity(text, args.ctx, max_windows=args.windows)
            c_ppl = {"ppl": r.ppl, "windows": r.windows, "tokens": r.tokens}
        c_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    t_ppl = perplexity(model, encode(tokenizer, text), args.ctx, max_windows=args.windows)
    result["perplexity"] = {
        "data": args.data, "ctx": args.ctx, "windows": c_ppl["windows"], "c": c_ppl["ppl"], "torch": t_ppl.ppl,
        "relative_difference": abs(c_ppl["ppl"] - t_ppl.ppl) / t_ppl.ppl, "runner": "pbs2p-run" if cli else "Model",
        "c_seconds": round(c_seconds, 1), "torch_seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(result["perplexity"]))

    # 2. greedy continuations
    rows = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        want, t_margin = torch_greedy(model, ids, args.n)
        got = cmodel.generate(ids, n_predict=args.n, stop_at_eos=False).tokens
        first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        row = {"prompt": prompt, "equal": got == want, "first_difference": first, "n": args.n,
               "text": tokenizer.decode(got)}
        if first is not None:
            row["torch_margin_at_difference"] = t_margin[first]
            row["c_margin_at_difference"] = c_margins(cmodel, ids, got)[first]
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("prompt", "equal", "first_difference")}))
    result["greedy"] = rows

    # 3. whole-novel tokenization
    novel = load_text(args.novel, split="test")
    t0 = time.perf_counter()
    c_ids = cmodel.tokenize(novel)
    c_tok_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf_ids = tokenizer(novel)["input_ids"]
    hf_tok_s = time.perf_counter() - t0
    mismatch = next((i for i, (a, b) in enumerate(zip(c_ids, hf_ids)) if a != b), None)
    result["tokenization"] = {"text": args.novel, "characters": len(novel), "tokens": len(hf_ids),
                              "identical": c_ids == hf_ids, "first_mismatch": mismatch,
                              "c_seconds": round(c_tok_s, 2), "hf_seconds": round(hf_tok_s, 2)}
    print(json.dumps(result["tokenization"]))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parity.json").write_text(json.dumps(result, indent=2) + "\n")
    pp, tk = result["perplexity"], result["tokenization"]
    lines = [
        "# libpbs2p vs PyTorch on the same compressed model",
        "",
        f"Command: `python bench/parity.py --checkpoint {args.checkpoint} --gguf {args.gguf} --out {args.out} "
        f"--ctx {args.ctx} --windows {args.windows} --n {args.n} --threads {args.threads}`",
        "",
        "The PyTorch model is the checkpoint fake-quantized, with the embedding rounded to float16 as the GGUF stores it.",
        "",
        f"**Perplexity** ({pp['data']}, the first {pp['windows']} windows of {pp['ctx']} tokens): "
        f"C ({pp['runner']}) {pp['c']:.4f}, PyTorch {pp['torch']:.4f}, relative difference "
        f"{pp['relative_difference']:.2e} (target < 5e-3).",
        "",
        f"**Greedy continuations** ({args.n} tokens, eos ignored):",
        "",
        "| prompt | identical | first difference | top-2 margin there (torch / C) |",
        "|---|---|---:|---|",
    ]
    for r in rows:
        margin = (f"{r['torch_margin_at_difference']:.2e} / {r['c_margin_at_difference']:.2e}"
                  if r["first_difference"] is not None else "—")
        lines.append(f"| {r['prompt']} | {'yes' if r['equal'] else 'no'} | "
                     f"{'—' if r['first_difference'] is None else r['first_difference']} | {margin} |")
    lines += ["", f"**Tokenization** of {tk['text']} ({tk['characters']:,} characters, {tk['tokens']:,} tokens): "
              f"{'identical' if tk['identical'] else 'DIFFERENT at token ' + str(tk['first_mismatch'])} "
              f"(C {tk['c_seconds']} s, Hugging Face {tk['hf_seconds']} s)", ""]
    (args.out / "parity.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
