"""A tiny run of scripts/benchmark.py so the benchmark keeps working (its figures are not asserted)."""

import json
import subprocess
import sys

from devtools.shared import REPO_ROOT


def test_benchmark_runs_all_parts(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "benchmark.py"), "--portraits", "4",
                           "--scenes", "1", "--passes", "1", "--sweep", "100,1000", "--concurrency", "2",
                           "--report", str(report)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    for part in ("a_raw", "b_service", "c_naive"):
        assert result[part]["portraits"] and result[part]["classroom"], part
    assert set(result["ratios"]["portraits"]) == {"b_over_a", "b_over_c"}
    assert [row["embeddings"] for row in result["gallery_sweep"]] == [100, 1000]
    assert result["b_service"]["portraits"]["faces"] >= 4  # every portrait answered with its face
