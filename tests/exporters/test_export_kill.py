"""SIGKILL during `pbs2p-edge export` (GGUF and ONNX): the target is never a partial file, and the next run is exact.

Each format: uninterrupted runs measure the export's duration D and give the reference bytes; then runs are
SIGKILLed (tests/kill_runner.kill_sweep) at 16 deterministic moments (8 spread over D, 8 over its last 15 %
up to 5 % past the end) and once just before each of the run's file-system operations on the output
directory (temp creation, writes, chmod, rename, stale-temp cleanup), each over a target reset to an older
export (other options, other bytes). After every kill the target must be byte-identical to the old
file or to the reference (a kill after the rename), and every other entry in the directory must be a hidden
temp of this target named by pbs2p_edge.files.stale_temps (the only thing a SIGKILL can leave). Then a normal run
must succeed, write the reference bytes exactly and remove every left-over temp. The kill moments land in
the export's real work: the runner forks children from a process that already imported everything.
"""

import re

import pytest
from kill_runner import KillRunner, kill_sweep

# (extension, options of the old file already at the target)
CASES = [(".gguf", ["--embed-type", "q8_0"]), (".onnx", ["--onnx-flavor", "portable"])]


@pytest.fixture(scope="module")
def runner():
    r = KillRunner()
    yield r
    r.close()


def _others(d, name):
    return sorted(p.name for p in d.iterdir() if p.name != name)


@pytest.mark.parametrize("ext,old_opts", CASES, ids=[c[0][1:] for c in CASES])
def test_sigkill_leaves_old_or_new_never_partial(runner, tmp_path, llama_ckpt, ext, old_opts):
    work = tmp_path / "out"
    work.mkdir()
    out = work / f"model{ext}"
    argv = ["export", llama_ckpt, out, "--quiet"]
    temp_name = re.compile(rf"^\.model\{ext}\.tmp-\d+-\w+$")

    runner.warm(["export", llama_ckpt, tmp_path / f"scratch{ext}", "--quiet"])
    assert runner.run([*argv, *old_opts])["rc"] == 0
    old = out.read_bytes()
    runs = [runner.run(argv) for _ in range(2)]
    assert all(r["rc"] == 0 for r in runs)
    ref = out.read_bytes()
    assert ref != old

    def check(when):
        now = out.read_bytes()  # os.replace keeps a complete file at the target at every moment
        assert now in (old, ref), f"killed {when}: target is {len(now)} bytes, neither old nor new"
        others = _others(work, out.name)
        assert all(temp_name.match(n) for n in others), others  # only recognisable hidden temps of this target
        return bool(others)

    counts = kill_sweep(runner, argv, min(r["seconds"] for r in runs), work, lambda: out.write_bytes(old), check)
    assert counts["timed_killed"] >= 1 and counts["mid_write"] >= 1, counts  # kills before the end and mid-write

    final = runner.run(argv)
    assert final["rc"] == 0
    assert out.read_bytes() == ref  # deterministic: same bytes as the uninterrupted run
    assert _others(work, out.name) == []  # the killed runs' temps were removed by this run
