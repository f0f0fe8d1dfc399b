"""The benchmark (bench/run.py) runs in quick mode and prints every figure.

This only proves that the benchmark works: CI machines are shared and noisy,
so no figure is checked against a target here (docs/performance.md has the
measured figures and the targets).
"""

from __future__ import annotations

import ast
import subprocess
import sys

from .harness import ROOT


def _labels() -> tuple[str, ...]:
    """bench/run.py's LABELS, read without importing the script."""
    tree = ast.parse((ROOT / "bench" / "run.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "LABELS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("no LABELS in bench/run.py")


def test_quick_benchmark_prints_every_figure() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--no-install"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for label in _labels():
        assert any(line.startswith(label) for line in proc.stdout.splitlines()), (label, out)
    assert "0 errors" in out
