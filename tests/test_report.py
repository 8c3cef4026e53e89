"""pbs2p_edge.report: plots and headline ratios redrawn from a small synthetic results folder."""

from __future__ import annotations

import json

import pytest

from pbs2p_edge.errors import ConfigError, DataError
from pbs2p_edge.report import headlines, kernel_rows, report

pytest.importorskip("matplotlib")

def _run(kernel, threads, tokens, seconds, nbytes=2_000_000_000):
    return {"kernel": kernel, "threads": threads, "tokens": tokens, "seconds": seconds, "bytes": nbytes}


# 2 GB a pass: at 1 thread avx512 takes 0.125 s (16 GB/s, 0.8 of copy 20), at 2 threads avx2's 0.1 s beats avx512's
# 0.2 s, over its own 2.5 GB (no kept signs: 25 GB/s)
KERNELS = {"meta": {"bandwidth_gbs": {"copy": {"1": 20.0, "2": 40.0}, "read": {"1": 10.0, "2": 20.0},
                                      "stream": {"1": 16.0, "2": 25.0}},
                    "l3_bytes": 2**28},
           "records": [{"shape": "llama-2-7b", "linear": "compact-4:8", "bytes": 2_000_000_000,
                        "runs": [_run("avx512", 1, 1, 0.125), _run("avx2", 1, 1, 0.2), _run("avx512", 2, 1, 0.2),
                                 _run("avx2", 2, 1, 0.1, 2_500_000_000), _run("avx512", 2, 64, 1.0)]},
                       {"shape": "smollm2-135m", "linear": "q4_0", "bytes": 2**20,  # in the L3: left out
                        "runs": [_run("avx512", 1, 1, 1e-4)]}]}

E2E = {"meta": {"threads": 2, "prompt_tokens": 256, "decode_tokens": 128},
       "rows": [{"engine": "pbs2p", "name": "pbs2p compact 4:8", "bits_per_weight": 1.414, "file_bytes": 7.7e7,
                 "prompt_tps": 400.0, "decode_tps": 240.0, "peak_rss_mib": 150, "model_rss_mib": 90},
                {"engine": "llama.cpp", "name": "llama.cpp Q4_0", "bits_per_weight": 4.5, "file_bytes": 9.2e7,
                 "prompt_tps": 900.0, "decode_tps": 120.0, "peak_rss_mib": 200, "model_rss_mib": 110},
                {"engine": "llama.cpp", "name": "llama.cpp Q2_K", "bits_per_weight": 4.2, "file_bytes": 8.0e7,
                 "prompt_tps": 800.0, "decode_tps": 160.0, "peak_rss_mib": 190, "model_rss_mib": 100}]}
QUALITY = {"meta": {"windows": 16, "seqlen": 2048, "data": "austen:prideprejudice"},
           "rows": [{"engine": "ours (torch eval)", "name": "pbs2p compact 4:8", "bits_per_weight": 1.414,
                     "ppl": 500.0, "windows": 16},
                    {"engine": "llama.cpp", "name": "llama.cpp TQ1_0", "bits_per_weight": 3.797, "ppl": 1.0e6,
                     "windows": 16},
                    {"engine": "llama.cpp", "name": "llama.cpp F16", "bits_per_weight": 16.0, "ppl": 25.0,
                     "windows": 16}]}
COST = {"meta": {}, "rows": [{"shape": "SmolLM2-135M shape", "method": "pbs2p 4:8", "seconds_per_block": 10.0,
                              "full_model_seconds": 300.0, "peak_rss_mib": 900.0},
                             {"shape": "Llama-3.2-1B shape", "method": "pbs2p 4:8", "seconds_per_block": 100.0,
                              "full_model_seconds": 1600.0, "peak_rss_mib": 3000.0}]}


def _write(d, name, obj):
    (d / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_kernel_rows_take_the_fastest_decode_variant_per_thread_count_of_passes_beyond_the_l3():
    rows = kernel_rows(KERNELS)
    assert [(r["label"], r["linear"]) for r in rows] == [("llama-2-7b compact-4:8 1t avx512", "compact-4:8"),
                                                         ("llama-2-7b compact-4:8 2t avx2", "compact-4:8")]
    assert [r["gbs"] for r in rows] == pytest.approx([16.0, 25.0])
    assert [r["fraction"] for r in rows] == pytest.approx([0.8, 0.625])
    assert [r["of_stream"] for r in rows] == pytest.approx([1.0, 1.0])


def test_headlines_compute_the_issue_ratios():
    text = "\n".join(headlines(E2E, QUALITY, kernel_rows(KERNELS)))
    assert "= **1.50x**" in text and "(llama.cpp Q2_K)" in text and "1.5: met)" in text     # 240 / 160, vs the fastest peer
    assert "median **0.71** of the copy bandwidth over 2 rows, lowest 0.62" in text  # (0.8 + 0.625) / 2
    assert "0.8 for every row: not met); median 1.00 of the read stream." in text
    assert "**1.414 bits/weight**" in text and "IQ1_S 1.56" in text
    assert "TQ1_0 1e+06 at 3.80 bits (ratio 0.0005)" in text and "F16 25 at 16.00 bits (ratio 20)" in text


def test_report_writes_every_plot_and_the_summary(tmp_path):
    _write(tmp_path, "e2e.json", E2E)
    _write(tmp_path, "quality_vs_size.json", QUALITY)
    _write(tmp_path, "compress_cost.json", COST)
    _write(tmp_path, "kernels.json", KERNELS)
    paths = report(tmp_path)
    assert [p.name for p in paths] == ["e2e.png", "pareto.png", "compress_cost.png", "kernels.png", "summary.md"]
    for p in paths[:-1]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert "**1.50x**" in paths[-1].read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_report_draws_only_what_the_folder_holds(tmp_path):
    _write(tmp_path, "e2e.json", E2E)
    assert [p.name for p in report(tmp_path)] == ["e2e.png", "summary.md"]


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such results directory"):
        report(tmp_path / "missing")
    with pytest.raises(DataError, match="none of"):
        report(tmp_path)
    _write(tmp_path, "e2e.json", "{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        report(tmp_path)


def test_cli_report_prints_the_written_paths_and_refuses_a_missing_folder(tmp_path):
    import subprocess
    import sys

    _write(tmp_path, "kernels.json", KERNELS)
    cmd = [sys.executable, "-m", "pbs2p_edge.cli", "report"]
    done = subprocess.run(cmd + [str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert str(tmp_path / "kernels.png") in printed and all(p.startswith(str(tmp_path)) for p in printed)
    bad = subprocess.run(cmd + [str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "no such results directory" in bad.stderr


def test_dominance_finds_our_best_file_no_larger_than_each_peer():
    from pbs2p_edge.report import dominance

    rows = [{"engine": "llama.cpp", "name": "llama.cpp Q4_0", "file_bytes": 91.7e6, "ppl": 28.7},
            {"engine": "llama.cpp", "name": "llama.cpp IQ1_S", "file_bytes": 82.3e6, "ppl": 51.8},
            {"engine": "llama.cpp", "name": "llama.cpp tiny", "file_bytes": 10e6, "ppl": 900.0},
            {"engine": "ours (libpbs2p)", "name": "a", "file_bytes": 84e6, "ppl": 27.0},
            {"engine": "ours (libpbs2p)", "name": "b", "file_bytes": 92e6, "ppl": 20.0},  # larger than Q4_0
            {"engine": "ours (libpbs2p)", "name": "c", "file_bytes": 70e6, "ppl": 60.0},
            {"engine": "ours (torch eval)", "name": "d", "bits_per_weight": 1.0, "ppl": 1.0}]  # no file: not a candidate
    lines = dominance(rows)
    assert lines[0].startswith("- llama.cpp tiny") and "no file of ours this small" in lines[0]
    assert "IQ1_S" in lines[1] and "NOT dominated by c" in lines[1]
    assert "Q4_0" in lines[2] and ": dominated by a" in lines[2]


def test_binary_tier_pairs_files_with_and_without_pbs2p_layers_of_the_same_recipe():
    from pbs2p_edge.report import binary_tier

    def row(name, mb, ppl, binary):
        return {"engine": "ours (libpbs2p)", "name": f"ours {name} (libpbs2p)", "file_bytes": mb * 1e6, "ppl": ppl,
                "tiers": {"q4_0": 10, **({"pbs2p": 3} if binary else {})}}

    rows = [row("budget-3", 50.2, 300.0, True), row("budget-3-recover64", 50.2, 80.0, True),
            row("budget-3-no-pbs2p", 50.1, 120.0, False),  # pairs with budget-3, not with the recovered file
            row("budget-4", 67.0, 40.0, False),  # no file with binary layers at 4: no line
            row("default", 83.8, 26.7, False), row("budget-5-no-pbs2p", 83.8, 27.0, False),
            row("budget-5-x", 83.9, 26.0, True),  # another recipe: budget-5-x
            row("budget-12-recover8", 90.0, 30.0, True), row("budget-12-no-pbs2p-recover8", 90.0, 29.0, False),
            {"engine": "ours (libpbs2p)", "name": "ours budget-3-old (libpbs2p)", "file_bytes": 1e6, "ppl": 1.0}]  # no tiers
    other = [{"name": "ours budget-3-no-pbs2p (libpbs2p)", "ppl": 290.0}]
    lines = binary_tier(rows, other)
    assert len(lines) == 4  # header, rule, budget-3, budget-12-recover8 (numeric order: 3 before 12)
    assert lines[2] == "| budget-3 | budget-3 | 50.2 | 300.00 | - | budget-3-no-pbs2p | 50.1 | 120.00 | 290.00 | no binary |"
    assert lines[3].startswith("| budget-12-recover8 | budget-12-recover8 |") and lines[3].endswith("| no binary |")
    rows.append(row("budget-5-no-pbs2p-y", 80.0, 30.0, False))  # the default (budget 5) against a binary file of 5
    rows.append(row("budget-5", 83.0, 25.0, True))
    lines = binary_tier(rows)
    assert "| budget-5 | budget-5 | 83.0 | 25.00 | - | default | 83.8 | 26.70 | - | binary |" in lines
    assert binary_tier([row("budget-4", 67.0, 40.0, False)]) == []
    # below the smallest file without the binary tier: the refusal stands in for the file
    refused = {"budget-2-no-pbs2p-recover64": "smallest file 43.1 MB", "budget-9-no-pbs2p": "x"}
    lines = binary_tier([row("budget-2-recover64", 33.6, 900.0, True)], refused=refused)
    assert lines[2] == ("| budget-2-recover64 | budget-2-recover64 | 33.6 | 900.00 | - | budget-2-no-pbs2p-recover64: "
                        "refused (smallest file 43.1 MB) | - | - | - | binary only |")
    assert binary_tier([row("budget-2-recover64", 33.6, 900.0, True)]) == []
