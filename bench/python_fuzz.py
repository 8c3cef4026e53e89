"""Bad input through the Python entry points: how many inputs each took, and how many ended in anything but a clean
refusal or a clean run.

A tiny random Llama (tests/conftest.py's) is compressed and exported; then each entry point gets
  - the families of tests/bad_inputs.py (corrupted GGUF files, checkpoints and custom-flavor ONNX files, each kind of
    damage once), and
  - random mutations (seeded): GGUF and ONNX files with 1-16 bytes overwritten at random offsets, cut at a random
    length, or with random bytes inserted; checkpoints with a random pbs2p.json / config.json leaf replaced by a
    value of another kind, or 1-16 bytes overwritten in a safetensors file.
Each input runs through `pbs2p-edge inspect`, `eval` and `run` (GGUF), `inspect`, `eval` and `export`
(checkpoints) or `inspect` (ONNX) in-process (pbs2p_edge.cli.main), and through the Python API (Model,
load_checkpoint, check_onnx). Outcomes: exit 2 with one error line ("refused"), exit 0 ("ran": a mutation the file
survives, e.g. in a weight), or anything else ("broken": an exception escaping main, another status, an error of
several lines; for the API, an exception that is not a Pbs2pError). ONNX files also run in onnxruntime with
libpbs2p's op (4 tokens): "refused" is onnxruntime's exception, "ran" finite logits, and "broken" non-finite logits
from a file check_onnx (and so inspect) accepts; files it runs to non-finite logits that check_onnx refuses are
counted apart. The table is written to OUT/fuzz_python.md (+ .json).

    python bench/python_fuzz.py --out bench/results [--mutations 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of "
        "a wife. However little known the feelings or views of such a man may be on his first entering a "
        "neighbourhood, this truth is so well fixed in the minds of the surrounding families. ") * 20


def _main(argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """(exit status, stdout, stderr, name of an exception that escaped main) of pbs2p-edge ARGV, in-process."""
    from pbs2p_edge import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc, escaped = cli.main([str(a) for a in argv]), None
        except SystemExit as e:
            rc, escaped = e.code if isinstance(e.code, int) else 1, None
        except BaseException as e:  # noqa: BLE001 - anything escaping main is what this benchmark counts
            rc, escaped = None, type(e).__name__
    return rc, out.getvalue(), err.getvalue(), escaped


def _outcome(rc, stdout, stderr, escaped) -> str:
    if escaped is None and rc == 2 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith("pbs2p-edge: error:"):
        return "refused"
    if escaped is None and rc == 0:
        return "ran"
    return "broken"


def _api(call) -> str:
    from pbs2p_edge.errors import Pbs2pError

    try:
        call()
        return "ran"
    except Pbs2pError:
        return "refused"
    except Exception:  # noqa: BLE001
        return "broken"


def _ort(path, ids, check) -> str:
    """onnxruntime with libpbs2p's op on `ids`: refused, ran (finite logits), non-finite (refused by check_onnx too)
    or broken (non-finite logits from a file check_onnx accepts)."""
    import numpy as np
    import onnxruntime as ort

    from pbs2p_edge.runtime.library import find_library

    so = ort.SessionOptions()
    so.register_custom_ops_library(str(find_library()))
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], enable_fallback=0)
        feeds = {i.name: _feed(i, ids) for i in sess.get_inputs()}
        outputs = sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime's exceptions: a refusal
        return "refused"
    if all(np.isfinite(o).all() for o in outputs):
        return "ran"
    return "non-finite" if _api(lambda: check(path)) == "refused" else "broken"


def _feed(info, ids):
    """A graph input of docs/ONNX.md §2 for `ids` (1, T): ids, a mask of ones, positions, an empty KV cache."""
    import numpy as np

    T = ids.shape[1]
    if info.name == "input_ids":
        return ids
    if info.name == "attention_mask":
        return np.ones((1, T), np.int64)
    if info.name == "position_ids":
        return np.arange(T, dtype=np.int64)[None]
    return np.zeros([1, *(d if isinstance(d, int) else 0 for d in info.shape[1:])], np.float32)  # past_key_values.*


def _mutate_gguf(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(3)
    if kind == 0:
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 1:
        return bytes(b[: rng.randrange(len(b))])
    at = rng.randrange(len(b))
    return bytes(b[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + b[at:])


def _mutants(src: Path, folder: Path, n: int, rng: random.Random) -> dict[str, Path]:
    """random-<i> -> folder/random-<i><src's suffix>, n byte mutations of the file src (_mutate_gguf's three kinds;
    they know nothing of the format, so they serve GGUF and ONNX files alike)."""
    data, out = src.read_bytes(), {}
    for i in range(n):
        p = folder / f"random-{i}{src.suffix}"
        p.write_bytes(_mutate_gguf(data, rng))
        out[p.stem] = p
    return out


_ODD = [None, -1, 0, 2**40, 1.5, "x", "", [], {}, [1, 2], {"a": 1}, True]


def _mutate_json(obj, rng: random.Random):
    """A copy of obj with one random leaf (or a whole table) replaced by a value of another kind."""
    paths = []

    def walk(o, path):
        paths.append(path)
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, (*path, k))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, (*path, i))

    walk(obj, ())
    path = rng.choice(paths[1:])
    out = json.loads(json.dumps(obj))
    target = out
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = rng.choice([v for v in _ODD if type(v) is not type(target[path[-1]])])
    return out


def _mutate_checkpoint(src: Path, dst: Path, rng: random.Random) -> None:
    shutil.copytree(src, dst)
    kind = rng.choice(["pbs2p.json", "config.json", "packed.safetensors", "dense.safetensors"])
    f = dst / kind
    if kind.endswith(".json"):
        f.write_text(json.dumps(_mutate_json(json.loads(f.read_text()), rng)))
    else:
        f.write_bytes(_mutate_gguf(f.read_bytes(), rng) if rng.random() < 0.5 else
                      bytes(_flip(f.read_bytes(), rng)))


def _flip(data: bytes, rng: random.Random) -> bytearray:
    b = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        b[rng.randrange(min(len(b), 4096))] = rng.randrange(256)  # the header and the first tensors
    return b


def run(args) -> dict:
    import numpy as np
    from bad_inputs import corrupt_checkpoints, corrupt_ggufs, corrupt_onnx
    from conftest import make_tiny_llama, make_tiny_tokenizer
    from saved_models import save_hf_dir

    from pbs2p_edge.checkpoint import load_checkpoint
    from pbs2p_edge.runtime import Model
    from pbs2p_exporters.onnx_read import check_onnx

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="pbs2p-fuzz-"))
    try:
        text = work / "text.txt"
        text.write_text(TEXT)
        src = save_hf_dir(make_tiny_llama(), make_tiny_tokenizer(), work / "src")
        ck, gg = work / "ck", work / "m.gguf"
        calib = ["--calib", text, "--nsamples", "2", "--seqlen", "32", "--block-size", "64", "--quiet", "--threads", "1"]
        assert _main(["compress", src, ck, "--method", "pbs2p", "--nm", "4:8", *calib])[0] == 0
        assert _main(["export", ck, gg])[0] == 0
        ggufs = dict(corrupt_ggufs(gg, (work / "g").mkdir() or work / "g"))
        ggufs.update(_mutants(gg, work / "g", args.mutations, rng))
        ckpts = dict(corrupt_checkpoints(ck, (work / "c").mkdir() or work / "c"))
        for i in range(args.mutations):
            _mutate_checkpoint(ck, work / "c" / f"random-{i}", rng)
            ckpts[f"random-{i}"] = work / "c" / f"random-{i}"
        on = work / "m.onnx"
        assert _main(["export", ck, on])[0] == 0
        onnxs = dict(corrupt_onnx(on, (work / "o").mkdir() or work / "o"))
        onnxs.update(_mutants(on, work / "o", args.mutations, rng))
        points = {
            "inspect GGUF": lambda p: ["inspect", p],
            "eval GGUF": lambda p: ["eval", p, "--data", text, "--seqlen", "32", "--max-windows", "2", "--threads", "1"],
            "run GGUF": lambda p: ["run", p, "-p", "It is a truth", "-n", "4", "-t", "1"],
            "inspect checkpoint": lambda p: ["inspect", p],
            "eval checkpoint": lambda p: ["eval", p, "--data", text, "--seqlen", "32", "--max-windows", "2",
                                          "--threads", "1"],
            "export checkpoint": lambda p: ["export", p, work / "out.gguf"],
            "inspect ONNX": lambda p: ["inspect", p],
        }
        rows, broken = [], []
        for point, argv in points.items():
            inputs = {"GGUF": ggufs, "checkpoint": ckpts, "ONNX": onnxs}[point.split()[-1]]
            counts = {"refused": 0, "ran": 0, "broken": 0}
            t0 = time.perf_counter()
            for name, path in inputs.items():
                if args.trace:
                    print(point, name, file=sys.stderr, flush=True)
                res = _outcome(*_main(argv(path)))
                counts[res] += 1
                if res == "broken":
                    broken.append(f"{point}: {name}")
                (work / "out.gguf").unlink(missing_ok=True)
            rows.append({"entry point": point, "inputs": len(inputs), **counts,
                         "seconds": round(time.perf_counter() - t0, 1)})
        for point, inputs, call in [("Model(path) + eval (API)", ggufs, lambda p: _model_eval(Model, p)),
                                    ("load_checkpoint (API)", ckpts, load_checkpoint),
                                    ("check_onnx (API)", onnxs, check_onnx)]:
            counts = {"refused": 0, "ran": 0, "broken": 0}
            t0 = time.perf_counter()
            for name, path in inputs.items():
                if args.trace:
                    print(point, name, file=sys.stderr, flush=True)
                res = _api(lambda: call(path))
                counts[res] += 1
                if res == "broken":
                    broken.append(f"{point}: {name}")
            rows.append({"entry point": point, "inputs": len(inputs), **counts,
                         "seconds": round(time.perf_counter() - t0, 1)})
        counts = {"refused": 0, "ran": 0, "non-finite": 0, "broken": 0}
        t0 = time.perf_counter()
        ids = np.array([[5, 17, 99, 3]], np.int64)
        for name, path in onnxs.items():
            if args.trace:
                print("onnxruntime", name, file=sys.stderr, flush=True)
            res = _ort(path, ids, check_onnx)
            counts[res] += 1
            if res == "broken":
                broken.append(f"onnxruntime + libpbs2p: {name}")
        rows.append({"entry point": "onnxruntime + libpbs2p (4 tokens)", "inputs": len(onnxs), **counts,
                     "seconds": round(time.perf_counter() - t0, 1)})
        return {"rows": rows, "broken": broken, "mutations": args.mutations, "seed": args.seed,
                "families": {"gguf": len(ggufs) - args.mutations, "checkpoint": len(ckpts) - args.mutations,
                             "onnx": len(onnxs) - args.mutations}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _model_eval(Model, path) -> None:
    with Model(path, n_ctx=16) as m:
        m.eval([1, 2, 3])


def write(res: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_python.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = ["# Bad input through the Python entry points", "",
             f"Made by `{command}` (bench/python_fuzz.py; its docstring says what each outcome means). Inputs: "
             f"{res['families']['gguf']} damaged GGUF files, {res['families']['checkpoint']} damaged checkpoints "
             f"and {res['families']['onnx']} damaged ONNX files of tests/bad_inputs.py's families, plus "
             f"{res['mutations']} random mutations of each kind (seed {res['seed']}), from a compressed tiny random "
             "Llama. **broken** (a traceback, another exit status, an error of several lines; in onnxruntime, "
             "non-finite logits from a file check_onnx accepts) must be 0. non-finite: onnxruntime ran the file to "
             "non-finite logits (damage to standard ops' weights, which neither onnxruntime nor our op checks) and "
             "check_onnx, so inspect, refuses it.", "",
             "| entry point | inputs | refused (exit 2, one line) | ran (exit 0) | non-finite | broken | seconds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['entry point']} | {r['inputs']} | {r['refused']} | {r['ran']} | {r.get('non-finite', '')} "
                     f"| **{r['broken']}** | {r['seconds']} |")
    lines += ["", "Broken inputs: " + (", ".join(res["broken"]) if res["broken"] else "none.")]
    (out / "fuzz_python.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--mutations", type=int, default=300, help="random mutations per input kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trace", action="store_true", help="name each input on stderr before it runs")
    args = p.parse_args()
    res = run(args)
    write(res, args.out, "python bench/python_fuzz.py --out " + str(args.out) +
          ("" if args.mutations == 300 else f" --mutations {args.mutations}") +
          ("" if args.seed == 0 else f" --seed {args.seed}"))
    print(json.dumps(res["rows"], indent=1))
    return 1 if res["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
