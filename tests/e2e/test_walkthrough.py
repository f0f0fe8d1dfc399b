"""docs/walkthrough.md, run as a test: its steps (tests/e2e/walkthrough.py) on
real loopback servers and a real mitmweb, checked through mitmweb's JSON API;
scripts/screenshots runs the same steps with screenshots."""

from __future__ import annotations

from .walkthrough import run


def test_the_walkthrough_steps_pass() -> None:
    lines: list[str] = []
    result = run(shots=None, log=lines.append)
    assert sum(line.startswith("  ok  ") for line in lines) >= 20, "\n".join(lines)
    assert "5 of 7 recorded decision(s) change" in result["diff"]
    assert "decision: allowed: the token is active" in result["explain"]
