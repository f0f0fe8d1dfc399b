"""`oauth2-introspection-diff FLOWS CONFIG`: the policy diff as a console script.

Re-evaluates every request the addon annotated in a saved mitmproxy flow file
against a candidate declarative config and prints the decisions that change.
Nothing is sent upstream; introspection answers come from the recorded
introspection flows (`--live` introspects tokens without one at the candidate
plugin's endpoint). Exit status: 0 nothing changes, 1 something changes,
2 an error (unreadable file, invalid config).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from mitmproxy import exceptions

from .diff import diff_file
from .errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="oauth2-introspection-diff",
        description="Which recorded decisions change under a candidate configuration.",
    )
    parser.add_argument("flows", help="mitmproxy flow file (mitmdump -w, mitmweb Save)")
    parser.add_argument("config", help="candidate Kong declarative config (YAML or JSON)")
    parser.add_argument("--live", action="store_true",
                        help="introspect tokens without a recorded answer at the endpoint")
    parser.add_argument("--json", action="store_true", help="print the changes as JSON")
    args = parser.parse_args(argv)
    try:
        report = asyncio.run(diff_file(args.flows, args.config, live=args.live))
    except ConfigError as e:
        print(f"oauth2-introspection-diff: invalid candidate config: {e}", file=sys.stderr)
        return 2
    except (OSError, exceptions.FlowReadException) as e:
        print(f"oauth2-introspection-diff: cannot read {args.flows}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "evaluated": report.evaluated,
            "skipped": report.skipped,
            "changes": [
                {"flow": r.flow_id, "request": r.request, "recorded": r.before.text(),
                 "candidate": r.after.text(), "changes": r.changes}
                for r in report.rows
            ],
        }, indent=2, ensure_ascii=False))
    else:
        print(report.table())
    return 1 if report.rows else 0


if __name__ == "__main__":
    sys.exit(main())
