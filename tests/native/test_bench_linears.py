"""pbs2p-bench-linears (native/bench) and the random files bench/random_gguf.py writes for it: every linear kind the
kernel bench times loads in libpbs2p (the paper structure's arrays consistent as the format requires), the bench's
JSON accounts for every linear's bytes, and its read stream reads every byte of its buffer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pbs2p_edge.pack import tiers
from pbs2p_edge.runtime.model import Model

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from random_gguf import llama_config, linears, write_ours  # noqa: E402

# scripts/test.sh builds the native tests (and this program) in build/ctest before the Python tests run
BINARY = next((p for p in sorted(ROOT.glob("build/*/native/pbs2p-bench-linears")) if p.is_file()), None)
CONFIG = llama_config(128, 384, 2, 4, 2, 32, 300, False, 10000.0, 256)
KINDS = ["compact-4:8", "compact-6:8", "paper-4:8", "paper-6:8", "q8_0", "q4_0", "q4_s16", "q3_s16", "q2_s16"]
KIND_NAMES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_linears")
    return {k: write_ours(d / f"{k.replace(':', 'of')}.gguf", CONFIG, 0, k) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_every_random_kind_loads_and_runs(files, kind):
    with Model(files[kind], n_threads=1, n_ctx=16) as m:
        logits = m.eval([1, 5, 7], 0, last_only=True)
    assert logits.shape == (CONFIG["vocab_size"],) and (logits == logits).all()


def test_unknown_kind_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="unknown linear kind 'paper-8:8'"):
        write_ours(tmp_path / "x.gguf", CONFIG, 0, "paper-8:8")
    assert not list(tmp_path.iterdir())


needs_binary = pytest.mark.skipif(BINARY is None, reason="pbs2p-bench-linears not built (scripts/test.sh builds it "
                                  "in build/ctest)")


def run(*args):
    p = subprocess.run([str(BINARY), *map(str, args)], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


@needs_binary
@pytest.mark.parametrize("kind,layout", [("compact-4:8", "4:8 "), ("paper-6:8", "6:8 planes, salient, 3 regions, "
                                         "group 128"), ("q4_s16", "q4_s16"), ("q8_0", "q8_0")])
@pytest.mark.parametrize("tokens", [1, 3])
def test_bench_accounts_for_every_linear(files, kind, layout, tokens):
    rc, out, err = run(files[kind], "--tokens", tokens, "--threads", 2, "--seconds", 0, "--min-passes", 2)
    assert rc == 0, err
    d = json.loads(out)
    assert (d["threads"], d["tokens"], d["blocks"], d["passes"]) == (2, tokens, 2, 2)
    assert [k["kind"] for k in d["kinds"]] == KIND_NAMES
    assert [(k["rows"], k["cols"]) for k in d["kinds"]] == [(R, K) for _, R, K in linears(CONFIG)[:7]]  # block 0
    assert all(k["layout"].startswith(layout) and k["count"] == 2 and k["seconds"] > 0 for k in d["kinds"])
    assert d["bytes"] == sum(k["bytes"] for k in d["kinds"])
    if kind.startswith("q"):  # grid tiers are read in place: the file's bytes of each matrix
        assert d["kinds"][0]["bytes"] == 2 * 128 * tiers.tier(kind).row_bytes(128)  # attn_q (128, 128), 2 blocks


@needs_binary
@pytest.mark.parametrize("threads", [1, 3])
def test_read_stream_reads_every_word(threads):
    rc, out, err = run("--read-stream", 0.01, "--threads", threads)
    assert rc == 0, err
    d = json.loads(out)
    n = d["bytes"] // 8  # words, each holding its index: 7 rounds of sum(range(n)), modulo 2^64
    assert d["threads"] == threads and d["read_gbs"] > 0
    assert d["check"] == 7 * (n * (n - 1) // 2) % 2**64


@needs_binary
@pytest.mark.parametrize("args,message", [([], "no model file"), (["--read-stream", 0], None),
                                          (["x.gguf", "--threads", 0], "out of range"),
                                          (["x.gguf", "--bogus", 1], "unknown option"),
                                          (["x.gguf", "--kernel", "nope"], "nope"),
                                          (["missing.gguf"], "missing.gguf")])
def test_bad_arguments_are_one_line_errors(args, message):
    rc, out, err = run(*args)
    assert rc in (1, 2) and out == "" and err.startswith("pbs2p-bench-linears: ")
    if message:
        assert message in err.splitlines()[0]
