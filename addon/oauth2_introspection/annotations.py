"""What mitmweb shows for a decision: the marker per outcome class, the
comment text in report mode, and the `introspection_mode` option's values.

Markers are emoji shortcodes from mitmproxy's own list (mitmproxy.utils.emoji,
the same in mitmproxy 11 and 12): mitmweb renders them in the flow list, and
`~marked` or the `flow.mark` command work on them as on any user mark.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from .decision import Decision
from .token import remove_token

MODES = ("enforce", "report")

#: outcome class -> marker
MARKERS = {
    "allowed": ":green_circle:",
    "anonymous": ":large_blue_circle:",
    "preflight": ":white_circle:",
    # authentication failed: 401
    "unauthorized": ":red_circle:",
    # the proxy could not decide: 502 introspection failure, 500 misconfiguration or
    # internal error, 503 no policy
    "error": ":orange_circle:",
    # report mode: forwarded, but enforce mode would have refused it
    "report_refused": ":yellow_circle:",
    # an introspection call shown as its own flow (subflows.py)
    "introspection": ":mag:",
}


def parse_mode(value: str) -> str:
    """The mode named by an option value; ValueError for anything else."""
    mode = value.strip().lower()
    if mode not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)}, not {value!r}")
    return mode


def outcome_class(decision: Decision, report: bool) -> str:
    if decision.refusal is None:
        return decision.outcome if decision.outcome in MARKERS else "allowed"
    if report:
        return "report_refused"
    return "unauthorized" if decision.refusal.status == 401 else "error"


def marker_for(decision: Decision, report: bool) -> str:
    return MARKERS[outcome_class(decision, report)]


def summary_for(decision: Decision, report: bool) -> str:
    """The outcome part of the flow comment."""
    if not report:
        return decision.summary
    if decision.refusal is not None:
        return f"report only: would refuse {decision.summary} (forwarded unchanged)"
    return f"report only: would forward {decision.summary} (forwarded unchanged)"


def report_details(
    decision: Decision, request: http.Request, removed: list[str], meta: dict[str, Any]
) -> None:
    """Metadata for report mode: what enforce mode would have done."""
    meta["would_set_headers"] = dict(decision.set_headers)
    meta["would_remove_headers"] = removed
    if decision.refusal is not None:
        meta["would_answer"] = decision.refusal.status
    if decision.hide is not None:
        # on a copy: the request itself goes upstream untouched
        meta["would_hide_credentials"] = remove_token(request.copy(), decision.hide)
