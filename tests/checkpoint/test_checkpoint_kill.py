"""SIGKILL during `pbs2p-edge compress` (the checkpoint write): old checkpoint, new one or none, never partial.

A fast compress (RTN 4:8 of the tiny Llama, 2 x 16 calibration tokens) is SIGKILLed at 10 deterministic
moments of its measured duration and once just before each file-system operation under the output's directory
(tests/kill_runner.kill_sweep), each time over a target reset to an older checkpoint (6:8). After each kill the
target must be the old checkpoint, the new one, or absent with the old one whole in a hidden ".old-" directory
(a kill between atomic_dir's two renames: a directory cannot be renamed over a non-empty one); every other
entry must be a hidden temp of this target named by pbs2p_edge.files.stale_temps, or its progress directory
(model/progress.py). Then a normal run must succeed, write the same checkpoint as an uninterrupted run and leave no
temp behind. A second test kills a budget run with recovery before each file-system event of its progress
directory and resumes it: every resumed run writes the uninterrupted run's checkpoint.

Byte-identity holds for every file but pbs2p.json, whose "extra" records the run's wall time and peak memory (and
the bit budget's planning time): those values are dropped before comparing; everything else in it must match.
"""

import re
import shutil

import pytest
from kill_runner import KillRunner, kill_sweep
from saved_models import checkpoint_snapshot as snapshot
from saved_models import english_text

TEMP = re.compile(r"^\.ck\.((tmp|old)-\d+-\w+|progress)$")  # progress: the finished blocks (--resume)


@pytest.fixture(scope="module")
def runner():
    r = KillRunner()
    yield r
    r.close()


def test_sigkill_leaves_old_new_or_none_never_partial(runner, tmp_path, tiny_llama_dir):
    text = tmp_path / "english.txt"
    text.write_text(english_text())
    work = tmp_path / "out"
    work.mkdir()
    out = work / "ck"
    opts = ["--method", "rtn", "--calib", text, "--nsamples", "2", "--seqlen", "16", "--block-size", "64",
            "--seed", "0", "--threads", "1", "--quiet"]
    argv = ["compress", tiny_llama_dir, out, "--nm", "4:8", *opts]

    runner.warm(["compress", tiny_llama_dir, tmp_path / "scratch", "--nm", "4:8", *opts])
    assert runner.run(["compress", tiny_llama_dir, work / "old", "--nm", "6:8", *opts])["rc"] == 0
    old_dir = tmp_path / "old"
    (work / "old").rename(old_dir)
    old = snapshot(old_dir)
    runs = [runner.run(argv) for _ in range(2)]
    assert all(r["rc"] == 0 for r in runs)
    ref = snapshot(out)
    assert ref != old

    def reset():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old_dir, out)

    def check(when):
        others = sorted(p.name for p in work.iterdir() if p.name != out.name)
        assert all(TEMP.match(n) for n in others), others  # only recognisable hidden temps of this target
        if out.exists():
            assert snapshot(out) in (old, ref), f"killed {when}: a partial checkpoint"
        else:  # killed between the two renames: the old checkpoint waits, whole, in a .old- directory
            kept = [work / n / "x" for n in others if n.startswith(".ck.old-") and (work / n / "x").is_dir()]
            assert any(snapshot(k) == old for k in kept), f"killed {when}: target gone and the old one lost"
        return any(n.startswith(".ck.tmp-") for n in others)

    counts = kill_sweep(runner, argv, min(r["seconds"] for r in runs), work, reset, check, n_spread=4, n_end=6)
    assert counts["timed_killed"] >= 1 and counts["mid_write"] >= 1, counts

    assert runner.run(argv)["rc"] == 0
    assert snapshot(out) == ref  # deterministic: the same checkpoint as the uninterrupted run
    assert sorted(p.name for p in work.iterdir()) == ["ck"]  # the killed runs' temps were removed


def test_resume_after_a_kill_anywhere_writes_the_uninterrupted_checkpoint(runner, tmp_path, tiny_llama_dir):
    """The bit budget (plan.json) with recovery (the norms it changes, the full-precision activations): killed
    before every file-system event under its progress directory, then `--resume`d; each resumed run reports the
    blocks the killed one kept and writes the same bytes as a run never killed."""
    text = tmp_path / "english.txt"
    text.write_text(english_text())
    out = tmp_path / "ck"
    argv = ["compress", tiny_llama_dir, out, "--bpw", "24", "--recover", "2", "--calib", text, "--nsamples", "2",
            "--seqlen", "16", "--seed", "0", "--threads", "1", "--quiet"]
    runner.warm([*argv[:2], tmp_path / "scratch", *argv[3:]])
    progress = tmp_path / ".ck.progress"
    full = runner.run(argv, watch=progress)
    assert full["rc"] == 0 and full["events"] > 0 and not progress.exists()
    ref = snapshot(out)
    resumed = set()
    for k in range(1, full["events"] + 1):
        shutil.rmtree(out)
        assert runner.run(argv, kill_at_event=k, watch=progress)["killed"]
        done = len(list(progress.glob("block-*.pt")))
        assert runner.run([*argv, "--resume"])["rc"] == 0
        assert snapshot(out) == ref, f"resumed after a kill before event {k} (block files: {done})"
        assert not progress.exists()
        resumed.add(done)
    assert resumed == {0, 1, 2}  # kills before any block was kept, after the first, after both
