"""The steps of docs/walkthrough.md, runnable: as a test (tests/e2e/test_walkthrough.py)
and, with screenshots, by scripts/screenshots (which regenerates docs/screenshots/).

    python -m tests.e2e.walkthrough [--screenshots DIR]

Everything runs on loopback ports picked at start (not the demo's fixed 8080/
8081/9000/9001, so it runs beside a demo): the development echo service and
introspection endpoint with configs/dev-tokens.yaml, and mitmweb with
configs/example.yaml and the Admin API, exactly as the walkthrough describes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from oauth2_introspection.devtools.echo import EchoServer
from oauth2_introspection.devtools.idp import IdpServer

from .harness import ROOT, free_port, wait_for_port
from .mitmweb import MITMPROXY_MAJOR, Mitmweb, WebApi

DEMO_AUTH = "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="  # demo-client:demo-secret
DEMO_IDP = "http://127.0.0.1:9001"
COLUMNS = ["index", "method", "path", "status", "time", "comment"]
WIDE_COMMENTS = ("th.col-comment, td.col-comment { width: 52% !important; "
                 "text-align: left !important; "
                 "max-width: none !important; }")


class Step:
    """Collects what each step saw; `check` raises AssertionError like a test."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(what)
        self.log(f"  ok  {what}")


def config_copy(name: str, idp_url: str, into: Path) -> Path:
    """configs/NAME with the demo IdP address replaced by the running one."""
    text = (ROOT / "configs" / name).read_text().replace(DEMO_IDP, idp_url)
    path = into / name
    path.write_text(text)
    return path


def by_path(flows: list[dict[str, Any]], path: str, nth: int = 0) -> dict[str, Any]:
    matches = [f for f in flows if f["request"]["path"] == path]
    return matches[nth]


def run(shots: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    step = Step(log)
    work = Path(tempfile.mkdtemp(prefix="walkthrough-"))
    tokens = yaml.safe_load((ROOT / "configs" / "dev-tokens.yaml").read_text())
    echo = EchoServer().start()
    idp = IdpServer(tokens=tokens, client_auth=DEMO_AUTH).start()
    idp_url = f"http://127.0.0.1:{idp.port}"
    example = config_copy("example.yaml", idp_url, work)
    candidate = config_copy("anonymous.yaml", idp_url, work)
    flows_file = work / "flows.mitm"
    admin_port = free_port()
    web = Mitmweb(example, echo.port, [
        "--set", f"save_stream_file={flows_file}",
        "--set", f"introspection_admin=127.0.0.1:{admin_port}",
        *[a for c in COLUMNS for a in ("--set", f"web_columns={c}")],
    ])
    result: dict[str, Any] = {}
    try:
        web.start()
        wait_for_port(admin_port, web.proc)
        api = WebApi(web)
        client = httpx.Client(base_url=web.url, trust_env=False, timeout=15)

        log("Step 1: a refused and an allowed request, as mitmweb shows them")
        step.check(client.get("/hello").status_code == 401, "/hello without a token: 401")
        alice = {"Authorization": "Bearer alice-token"}
        step.check(client.get("/hello", headers=alice).status_code == 200,
                   "/hello with alice-token: 200")
        step.check(client.get("/hello", headers=alice).status_code == 200,
                   "again: 200 (from the cache)")
        step.check(client.get("/hello?access_token=expired-token").status_code == 401,
                   "expired-token: 401")
        step.check(client.get("/hello", headers={"Authorization": "Bearer broken-token"})
                   .status_code == 502, "broken-token (the endpoint fails): 502")
        flows = api.wait_flows(lambda fl: len(fl) >= 8)
        hello = [f for f in flows if f["request"]["path"].startswith("/hello")]
        refused, allowed, hit = hello[0], hello[1], hello[2]
        step.check(refused["comment"].endswith("401 missing token") and refused["marked"] == "🔴",
                   f"refused flow: 🔴 {refused['comment']!r}")
        step.check("allowed alice (introspected" in allowed["comment"]
                   and allowed["marked"] == "🟢", f"allowed flow: 🟢 {allowed['comment']!r}")
        step.check("allowed alice (cache hit" in hit["comment"], f"cache hit: {hit['comment']!r}")
        step.check(hello[4]["comment"].endswith("502 introspection endpoint answered non-200")
                   and hello[4]["marked"] == "🟠", f"502 flow: 🟠 {hello[4]['comment']!r}")

        log("Step 2: the introspection call behind the allowed flow")
        subs = [f for f in flows if "introspection call" in f["comment"]]
        sub = next(f for f in subs if allowed["id"][:8] in f["comment"])
        auth = dict((k.lower(), v) for k, v in sub["request"]["headers"])["authorization"]
        step.check(sub["marked"] == "🔍" and auth == "Basic ***",
                   f"linked introspection flow, Authorization masked: {sub['comment']!r}")
        step.check(len(subs) == 3, "one introspection flow per call (alice, expired, broken)")

        log("Step 3: commands from mitmweb's command bar (here via its command API)")
        explained = api.command("introspection.explain", "@" + allowed["id"])
        step.check("decision: allowed: the token is active" in explained,
                   "introspection.explain @<flow>")
        token_id = explained.split(", id ")[1].split()[0]
        shown = api.command("introspection.cache.show")
        step.check(token_id in shown and "alice" in shown,
                   f"introspection.cache.show lists alice's token as {token_id}")
        step.check(api.command("introspection.cache.flush", "alice-token")
                   == "flushed 1 cached answer(s)", "introspection.cache.flush alice-token")
        step.check(api.command("introspection.reload").startswith("reloaded"),
                   "introspection.reload")
        result["explain"] = explained

        log("Step 4: report mode, switched on live from the options")
        step.check(api.set_options(introspection_mode="report").status_code == 200,
                   "introspection_mode = report")
        forwarded = client.get("/report-me")
        step.check(forwarded.status_code == 200, "/report-me without a token: forwarded (200)")
        flows = api.wait_flows(lambda fl: any(f["request"]["path"] == "/report-me" for f in fl))
        reported = by_path(flows, "/report-me")
        step.check(reported["marked"] == "🟡" and "would refuse 401 missing token"
                   in reported["comment"], f"report flow: 🟡 {reported['comment']!r}")
        api.set_options(introspection_mode="enforce")
        step.check(client.get("/report-me").status_code == 401, "back to enforce: 401")

        if shots is not None:
            flows = api.wait_flows(lambda fl: len(fl) >= 11)
            screenshots_web(web, shots, allowed["id"], log)
            screenshots_manager(f"http://127.0.0.1:{admin_port}", shots, log)
        client.close()
        api.close()
    finally:
        web.stop()
        echo.shutdown()
        idp.shutdown()

    log("Step 5: the policy diff against configs/anonymous.yaml (no IdP needed)")
    proc = subprocess.run(
        [sys.executable, "-m", "oauth2_introspection.diff_cli", str(flows_file), str(candidate)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    table = proc.stdout
    log(table)
    step.check(proc.returncode == 1, "the diff reports changes (exit status 1)")
    step.check("5 of 7 recorded decision(s) change" in table,
               "5 of 7 recorded decisions change: every refusal (missing, expired and broken "
               "tokens, both /report-me requests); the two allowed ones do not")
    for line in ("401 missing token", "401 invalid token",
                 "502 introspection endpoint answered non-200"):
        step.check(line in table, f"… {line} → anonymous guest")
    result["diff"] = table.replace(str(work), "<tmp>")
    return result


def screenshots_web(web: Mitmweb, shots: Path, allowed: str,
                    log: Callable[[str], None]) -> None:
    from .browser import browser_page

    shots.mkdir(parents=True, exist_ok=True)
    base = web.web_url + "/"
    if web.password:
        base += f"?token={web.password}"
    with browser_page(1600, 640) as page:
        page.goto(base)
        page.wait_for_selector("text=report only")
        # mitmweb gives the comment column a fixed narrow width: widen it
        page.add_style_tag(content=WIDE_COMMENTS)
        page.screenshot(path=str(shots / "mitmweb-flows.png"))
        log(f"  shot {shots / 'mitmweb-flows.png'}")
        for row, tab, name in (("allowed alice (introspected", "Comment",
                                "mitmweb-allowed-comment.png"),
                               (f"introspection call for flow {allowed[:8]}", "Request",
                                "mitmweb-introspection-flow.png")):
            page.locator("tr", has_text=row).first.click()
            page.get_by_role("link", name=tab, exact=True).first.click()
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / name))
            log(f"  shot {shots / name}")


def screenshots_manager(admin_url: str, shots: Path, log: Callable[[str], None]) -> None:
    from .browser import browser_page

    with browser_page(1400, 900) as page:
        page.goto(admin_url + "/")
        page.wait_for_selector("#plugins tbody tr >> text=service echo")
        page.screenshot(path=str(shots / "manager.png"), full_page=True)
        log(f"  shot {shots / 'manager.png'}")
        page.click("#plugins tbody tr button")
        page.fill("#introspection_url", "")
        page.fill("#ttl", "half a minute")
        page.click("#save")
        page.wait_for_selector('[data-error="config.ttl"]:not(:empty)')
        page.screenshot(path=str(shots / "manager-validation.png"), full_page=True)
        log(f"  shot {shots / 'manager-validation.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, help="write screenshots into this folder")
    args = parser.parse_args(argv)
    print(f"mitmproxy {MITMPROXY_MAJOR}.x")
    result = run(args.screenshots)
    print(json.dumps({"explain": result["explain"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
