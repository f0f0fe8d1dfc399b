"""The cached-token fast lane does exactly what the general path does.

Every case sends the same request twice with a warm token: once the general
way (the lane is bypassed when allowed decisions are logged) and once through
the lane, and compares everything the addon changes: the request sent
upstream, the flow's metadata, comment and marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http

from oauth2_introspection import addon as addon_module
from oauth2_introspection import fastlane
from oauth2_introspection.addon import METADATA_KEY, OAuth2Introspection
from oauth2_introspection.cache import IntrospectionCache

from .hooking import hooked
from .test_addon import (  # noqa: F401  (fixtures)
    CONFIG,
    TOKEN,
    Idp,
    bearer,
    context,
    mock_clients,
    reverse_flow,
    user_keep_host_header_is_off,
    write_config,
)

OTHER = "other-token-0123456789"


@pytest.fixture
def idp() -> Idp:
    return Idp()


@pytest.fixture
async def warm(tmp_path: Path, idp: Idp) -> Iterator[tuple[OAuth2Introspection, list[bool]]]:
    idp.answers[OTHER] = {"active": True, "username": "zed", "client_id": "app",
                          "scope": "a b", "exp": 4_000_000_000}
    addon = OAuth2Introspection()
    addon.cache = IntrospectionCache(clock=lambda: 1000.0)  # frozen: comments compare equal
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        mock_clients(addon, idp)
        used: list[bool] = []
        real = fastlane.allow_cached

        def spy(*args: Any) -> bool:
            used.append(real(*args))
            return used[-1]

        original = addon_module.allow_cached
        addon_module.allow_cached = spy  # type: ignore[assignment]
        try:
            yield addon, used
        finally:
            addon_module.allow_cached = original  # type: ignore[assignment]
    await addon.done()


def snapshot(flow: http.HTTPFlow) -> dict[str, Any]:
    r = flow.request
    return {
        "fields": r.headers.fields, "target": (r.scheme, r.host, r.port, r.path),
        "response": flow.response.status_code if flow.response else None,
        "metadata": flow.metadata.get(METADATA_KEY), "comment": flow.comment,
        "marked": flow.marked,
    }


async def both_ways(addon: OAuth2Introspection, used: list[bool], make: Any) -> tuple[Any, Any]:
    addon.log_allowed = False
    for _ in range(3):  # warm: introspected, then decoded and worked out
        await hooked(addon.request(make()))
    addon.log_allowed = True  # allowed decisions logged: the general path
    used.clear()
    general = make()
    await hooked(addon.request(general))
    assert used == []
    addon.log_allowed = False
    lane = make()
    await hooked(addon.request(lane))
    return snapshot(general), snapshot(lane)


CASES = {
    "service plugin, reverse target, consumer": lambda: reverse_flow("/basic", headers=bearer()),
    "hide_credentials": lambda: reverse_flow("/hide/x", headers=bearer()),
    "host route": lambda: reverse_flow("/a", host="api.example.test", headers=bearer()),
    "preserve_host": lambda: reverse_flow("/k", host="keep.example.test", headers=bearer()),
    "no consumer, exp": lambda: reverse_flow("/basic", headers=bearer(OTHER)),
    "other headers kept in order": lambda: reverse_flow(
        "/basic", headers={"Accept": "x/y", **bearer(), "X-Trace": "1"}),
    "route inheriting the service plugin": lambda: reverse_flow("/open", headers=bearer()),
    "Token scheme": lambda: reverse_flow("/basic", headers={"Authorization": f"token {TOKEN}"}),
}


@pytest.mark.parametrize("case", CASES)
async def test_the_lane_changes_what_the_general_path_changes(warm, case: str) -> None:
    addon, used = warm
    general, lane = await both_ways(addon, used, CASES[case])
    assert used == [True]
    assert lane == general
    assert lane["metadata"]["outcome"] == "allowed"


DECLINED = {
    "query": lambda: reverse_flow("/basic?x=1", headers=bearer()),
    "body": lambda: reverse_flow("/basic", method="POST", content=b"{}",
                                 headers={"Content-Type": "application/json", **bearer()}),
    "identity header sent": lambda: reverse_flow(
        "/basic", headers={**bearer(), "X-Consumer-Username": "forged"}),
    "preflight": lambda: reverse_flow("/basic", method="OPTIONS", headers=bearer()),
    "path rewritten": lambda: reverse_flow("/svc/x", headers=bearer()),
    "anonymous fallback": lambda: reverse_flow("/anon", headers=bearer("unknown")),
    "two Authorization headers": lambda: _twice_authorized(),
    "two Host headers": lambda: _two_hosts(),
}


def _two_hosts() -> http.HTTPFlow:
    flow = reverse_flow("/basic", headers=bearer())
    flow.request.headers.add("Host", "other.example.test")
    return flow


def _twice_authorized() -> http.HTTPFlow:
    flow = reverse_flow("/basic", headers=bearer())
    flow.request.headers.add("Authorization", "Bearer second")
    return flow


@pytest.mark.parametrize("case", DECLINED)
async def test_anything_else_goes_the_general_way(warm, case: str) -> None:
    addon, used = warm
    general, lane = await both_ways(addon, used, DECLINED[case])
    assert not any(used)
    assert lane == general


async def test_a_new_policy_or_consumer_set_is_never_served_from_an_old_plan(
        warm, tmp_path: Path) -> None:
    addon, used = warm
    await both_ways(addon, used, CASES["service plugin, reverse target, consumer"])
    assert used == [True]
    config = {**CONFIG, "consumers": [{"username": "alice", "custom_id": "renamed"}]}
    policy = addon.state.load_file(str(write_config(tmp_path, config, "v2.yaml")))
    assert addon.policy is policy
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))  # the general way once (works the identity out again)
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))
    assert flow.request.headers["X-Consumer-Custom-ID"] == "renamed"
    assert used[-1] is True


async def test_the_plans_of_one_answer_are_bounded(warm, monkeypatch) -> None:
    addon, used = warm
    monkeypatch.setattr(fastlane, "MAX_PLANS", 3)
    await both_ways(addon, used, lambda: reverse_flow("/a", host="api.example.test",
                                                      headers=bearer()))
    for i in range(10):
        flow = reverse_flow("/basic", host=f"h{i}.test", headers=bearer())
        await hooked(addon.request(flow))
        assert flow.metadata[METADATA_KEY]["outcome"] == "allowed"
    (_, memo), = addon.cache._hot.values()
    assert len(memo) <= 3 + 1  # the plans and the identity they share


async def test_answers_share_equal_parts_and_nothing_kept_is_walked_by_the_collector(
        warm, idp) -> None:
    """What the hot set keeps per answer is small (equal header fields, names,
    metadata and comments are shared) and made of plain tuples the garbage
    collector stops tracking, and a flow's metadata holds no list: nothing the
    collector has to walk again on every full collection."""
    import gc

    addon, used = warm
    third = "third-token-0123456789"
    idp.answers[third] = {**idp.answers[OTHER], "username": "yan"}  # same client id, scope
    flows = []
    for token in (OTHER, third):
        await both_ways(addon, used, lambda t=token: reverse_flow("/basic", headers=bearer(t)))
        flows.append(reverse_flow("/basic", headers=bearer(token)))
        await hooked(addon.request(flows[-1]))
    assert used[-1] is True
    plans = [fastlane._Plan._make(v) for _, memo in addon.cache._hot.values()
             for v in memo.values() if len(v) == len(fastlane._Plan._fields)]
    assert len(plans) == 2
    shared = {id(pair) for pair in plans[0].fields} & {id(pair) for pair in plans[1].fields}
    assert len(shared) == 3  # client id, scope, exp: one object each
    assert plans[0].added is plans[1].added
    gc.collect()
    gc.collect()  # dicts are untracked in full collections, once their values are
    for flow in flows:
        meta = flow.metadata[METADATA_KEY]
        assert [k for k, v in meta.items() if gc.is_tracked(v)] == []
    # nothing the cache keeps per answer is walked by the collector but the
    # hot-set record itself (entry and memo: a memo is a dict)
    for stored, memo in addon.cache._hot.values():
        assert not gc.is_tracked(stored) and not gc.is_tracked(memo), memo
    assert not any(gc.is_tracked(v) for v in addon.cache._entries.values())


async def test_the_cached_case_is_decided_without_a_coroutine(warm) -> None:
    """mitmproxy awaits what a hook returns only when it is awaitable: the
    lane returns None (no coroutine per request), the general path a
    coroutine that does the rest."""
    addon, used = warm
    await both_ways(addon, used, CASES["service plugin, reverse target, consumer"])
    flow = reverse_flow("/basic", headers=bearer())
    assert addon.request(flow) is None
    assert flow.metadata[METADATA_KEY]["outcome"] == "allowed"
    addon.log_allowed = True  # the general path
    flow = reverse_flow("/basic", headers=bearer())
    pending = addon.request(flow)
    assert pending is not None and METADATA_KEY not in flow.metadata
    await pending
    assert flow.metadata[METADATA_KEY]["outcome"] == "allowed"


async def test_the_lane_memo_of_a_policy_is_bounded(warm, monkeypatch) -> None:
    addon, used = warm
    monkeypatch.setattr(fastlane, "RESOLUTION_MEMO_SIZE", 2)
    await both_ways(addon, used, CASES["service plugin, reverse target, consumer"])
    used.clear()
    for i in range(6):
        flow = reverse_flow(f"/basic/{i}", headers=bearer())
        await hooked(addon.request(flow))
        assert flow.metadata[METADATA_KEY]["outcome"] == "allowed"
        assert len(addon.policy.lane_routes) <= 2
    assert used == [True] * 6
