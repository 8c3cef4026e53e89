"""A fork server for SIGKILL tests: runs `pbs2p-edge ARGV` in forked children and kills them at chosen moments.

Starting Python and importing torch / transformers / onnx takes ~3 s, while the work of a tiny export takes
~50 ms: a fresh `python -m pbs2p_edge.cli` per kill would spend every kill in the imports and the test a minute
in start-up. So one server process imports everything once, then for each request forks a child that runs the
real `pbs2p_edge.cli.main(argv)` (the exact code of `python -m pbs2p_edge.cli`) and, when asked, SIGKILLs it
`kill_after` seconds after the fork. The server reaps the child after the kill, so its pid cannot be reused.

`warm(argv)` first runs a command once inside the server (not forked, never killed), into a scratch output:
the CLI imports its exporters and tokenizer code lazily (~1 s), and children forked after that start at the
work itself. Protocol (one JSON object a line): request {"argv": [...], "kill_after": seconds or null,
"fork": bool, "kill_at_event": int or null, "watch": directory or null}; reply {"killed": bool, "rc": exit
status or null, "seconds": fork-to-exit wall time, "events": file-system events seen (forked runs)}.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class KillRunner:
    """Client of the server below: `run(argv, kill_after=None) -> dict` (the reply)."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "exporters"),
                                                                       os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"

    def warm(self, argv) -> None:
        """Run `argv` once in the server itself (imports what the command imports lazily); it must succeed."""
        assert self._send({"argv": [str(a) for a in argv], "kill_after": None, "fork": False})["rc"] == 0

    def run(self, argv, kill_after: float | None = None, kill_at_event: int | None = None, watch=None) -> dict:
        """Run `argv` in a forked child; SIGKILL it `kill_after` s after the fork, or just before its
        `kill_at_event`-th (1-based) file-system audit event on a path under `watch`. The reply's "events" is
        the number of such events the child saw (a run that was not killed by event: all of its events)."""
        return self._send({"argv": [str(a) for a in argv], "kill_after": kill_after, "fork": True,
                           "kill_at_event": kill_at_event, "watch": None if watch is None else str(watch)})

    def _send(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"kill server died (exit {self.proc.poll()})"
        return json.loads(line)

    def close(self):
        self.proc.kill()  # the server holds no state worth a clean exit (torch's teardown takes seconds)
        self.proc.wait()


def kill_times(duration: float, n_spread: int = 8, n_end: int = 8) -> list[float]:
    """Deterministic kill moments for a run measured at `duration` s: `n_spread` spread over the whole run and
    `n_end` over its last 15 % up to 5 % past the end (outputs are written last: the end is where atomicity is
    at stake; a moment past the end checks that a finished run's output is the new file)."""
    spread = [duration * (0.05 + 0.85 * i / max(n_spread - 1, 1)) for i in range(n_spread)]
    end = [duration * (0.85 + 0.20 * i / max(n_end - 1, 1)) for i in range(n_end)]
    return spread + end


def kill_sweep(runner: KillRunner, argv, duration: float, watch, reset, check, n_spread: int = 8,
               n_end: int = 8) -> dict:
    """SIGKILL `argv` at every kill_times(duration, n_spread, n_end) moment, then once before each of its
    file-system events under `watch` (every step of the write: temp creation, each file, chmod, renames,
    cleanup; a timed kill lands in a few-ms write only by chance).

    `reset()` puts the old output back before each run (temps left by earlier kills stay during the timed
    kills, so runs meet them; before each event kill they are removed first, so every run makes the same
    operations in the same order); `check(label)` asserts the state after the run and returns True when it
    found a temp of the output (the kill came mid-write). Returns counts: runs killed by time, runs that
    finished before their moment, timed kills that left a temp (chance), file-system events of one run,
    event kills that left a temp."""
    out = {"timed_killed": 0, "timed_finished": 0, "timed_mid_write": 0, "events": 0, "mid_write": 0}
    for t in kill_times(duration, n_spread, n_end):
        reset()
        res = runner.run(argv, kill_after=t)
        assert res["killed"] or res["rc"] == 0, f"{argv}: exit status {res['rc']}"  # finished before the kill
        mid_write = check(f"at {t:.4f} s")
        out["timed_killed" if res["killed"] else "timed_finished"] += 1
        out["timed_mid_write"] += res["killed"] and mid_write
    _remove_temps(watch)
    reset()
    full = runner.run(argv, watch=watch)
    assert full["rc"] == 0 and full["events"] > 0
    check("after a full run")
    out["events"] = full["events"]
    for k in range(1, full["events"] + 1):
        _remove_temps(watch)
        reset()
        res = runner.run(argv, kill_at_event=k, watch=watch)
        assert res["killed"], f"{argv}: not killed at file-system event {k} of {full['events']}"
        out["mid_write"] += check(f"before file-system event {k}")
    return out


def _remove_temps(d) -> None:
    """Remove the hidden entries (temps) of directory `d`."""
    for p in Path(d).iterdir():
        if p.name.startswith("."):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# File-system audit events (PEP 578) whose arguments name a path: each is raised just before the operation.
FS_EVENTS = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.truncate", "os.symlink",
             "os.link", "shutil.rmtree", "shutil.move", "shutil.copyfile", "tempfile.mkstemp", "tempfile.mkdtemp"}


def _watch_events(watch: str, kill_at: int | None) -> list[int]:
    """Count FS_EVENTS on paths under `watch` in this process; SIGKILL it just before event number `kill_at`.
    Returns the one-element counter list (read at exit). Writes by C extensions (safetensors, onnx) raise no
    event: they are covered by the time-based kills."""
    count = [0]
    inside = watch.rstrip(os.sep) + os.sep

    def hook(event, args):
        if event in FS_EVENTS and any(isinstance(a, (str, bytes, os.PathLike)) and
                                      os.fsdecode(a).startswith(inside) for a in args):
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    return count


def _serve() -> None:
    import torch

    torch.set_num_threads(1)  # forked children inherit one thread: no pool state to copy
    import pbs2p_exporters.gguf_export  # noqa: F401  (imported here so children start at the work)
    import pbs2p_exporters.onnx_export  # noqa: F401
    import transformers  # noqa: F401

    from pbs2p_edge import cli

    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        if not req["fork"]:
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
                    contextlib.redirect_stderr(devnull):
                rc = cli.main(req["argv"])
            print(json.dumps({"killed": False, "rc": rc, "seconds": time.perf_counter() - t0}), flush=True)
            continue
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: the CLI, quiet, exit status as the process status, event count on the pipe
            os.close(r)
            count = _watch_events(req["watch"], req["kill_at_event"]) if req["watch"] else [0]
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                rc = cli.main(req["argv"])
            except BaseException:
                rc = 99
            os.write(w, str(count[0]).encode())
            os._exit(rc)
        os.close(w)
        if req["kill_after"] is not None:
            time.sleep(max(0.0, t0 + req["kill_after"] - time.perf_counter()))
            os.kill(pid, signal.SIGKILL)  # an exited child is a zombie until reaped below: never another process
        _, status = os.waitpid(pid, 0)
        seconds = time.perf_counter() - t0
        with os.fdopen(r) as f:
            reported = f.read()
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print(json.dumps({"killed": killed, "rc": None if killed else os.waitstatus_to_exitcode(status),
                          "seconds": seconds, "events": int(reported) if reported else None}), flush=True)


if __name__ == "__main__":
    _serve()
