"""Webhook notifications of promotions, rollbacks, holds and reverts, delivered to local
HTTP receivers (real servers on loopback, standing in for Slack and a generic webhook):
once per event, in each format, and never in the way of the loop — a receiver that
hangs or answers 500 costs its own tries, not a tick."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from optimizer_operator.act.notify import (
    NamespaceWebhooks,
    Notice,
    Notifier,
    parse_webhooks,
    rollout_notice,
)
from optimizer_operator.local.prometheus import LocalPrometheus
from tests.conftest import OperatorProcess
from tests.gateway.conftest import serve
from tests.integration.test_canary_e2e import (
    _apply,
    _llmconfig,
    _rollout,
    _until_terminal,
    traffic,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _receiver(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handler)
    return await serve(app)


def _notice(event: str = "Promoted") -> Notice:
    return Notice(event=event, namespace="team-a", name="r1", llm_config="bot",
                  message="promoted after 3 measurements",
                  candidate={"provider": "openai", "model": "gpt-4o-mini"},
                  at="2026-12-03T18:00:00Z")  # fmt: skip


async def test_each_format_arrives_once_and_bad_receivers_cost_only_their_tries() -> None:
    got: dict[str, list[dict[str, Any]]] = {"json": [], "slack": []}
    hits = {"broken": 0, "hanging": 0}
    release = asyncio.Event()

    async def ok(request: web.Request) -> web.StreamResponse:
        got[request.match_info["tail"]].append(await request.json())
        return web.Response(text="ok")

    async def broken(request: web.Request) -> web.StreamResponse:
        hits["broken"] += 1
        return web.Response(status=500)

    async def hanging(request: web.Request) -> web.StreamResponse:
        hits["hanging"] += 1
        await release.wait()
        return web.Response(text="late")

    runners = []
    try:
        urls = {}
        for name, handler in (("ok", ok), ("broken", broken), ("hanging", hanging)):
            runner, urls[name] = await _receiver(handler)
            runners.append(runner)
        webhooks = parse_webhooks(json.dumps([
            {"url": urls["ok"] + "/json"},
            {"url": urls["ok"] + "/slack", "format": "slack", "events": ["Promoted"]},
            {"url": urls["broken"] + "/x"},
            {"url": urls["hanging"] + "/x", "timeout": 0.3},
            {"url": urls["ok"] + "/json", "namespaces": ["elsewhere"]},
        ]))  # fmt: skip
        outcomes: list[str] = []
        notifier = Notifier(webhooks, backoff=0.05, counted=outcomes.append)
        notifier.notify(("uid-1", "Promoted", "0", ""), _notice())
        notifier.notify(("uid-1", "Promoted", "0", ""), _notice())  # the same event again
        notifier.notify(("uid-1", "Holding", "0", "t1"), _notice("Holding"))
        assert await asyncio.to_thread(notifier.drain, 20)
    finally:
        release.set()
        for runner in runners:
            await runner.cleanup()
    assert [p["event"] for p in got["json"]] == ["Promoted", "Holding"]  # once each
    assert got["json"][0]["candidate"] == {"provider": "openai", "model": "gpt-4o-mini"}
    assert [p["text"] for p in got["slack"]] == [
        ":white_check_mark: Rollout team-a/r1 (bot → openai/gpt-4o-mini) promoted: "
        "promoted after 3 measurements"
    ]  # Holding not wanted there
    assert hits == {"broken": 6, "hanging": 6}  # three tries for each of two events
    assert sorted(outcomes) == ["failed"] * 4 + ["sent"] * 3


def test_a_rollouts_transitions_to_tell() -> None:
    body = {"metadata": {"uid": "u", "namespace": "n", "name": "r"},
            "spec": {"targetRef": {"name": "bot"},
                     "candidate": {"provider": "simulator", "model": "sim-small"}}}  # fmt: skip
    at = "2026-12-03T18:00:00Z"
    assert rollout_notice({"phase": "Progressing"}, {"phase": "Progressing"}, body, at) is None
    assert rollout_notice({"phase": "Paused"}, {"phase": "Aborted"}, body, at) is None
    told = rollout_notice({"phase": "Progressing"}, {"phase": "Promoted"}, body, at)
    assert told is not None and told[1].event == "Promoted"
    reverted = rollout_notice(
        {"phase": "Baking"},
        {"phase": "RolledBack", "conditions": [{"type": "Degraded", "reason": "BakeFailed"}]},
        body,
        at,
    )
    assert reverted is not None and reverted[1].event == "Reverted"
    first = rollout_notice({"phase": "Progressing"},
                           {"phase": "Holding", "holdingSince": "t1"}, body, at)  # fmt: skip
    second = rollout_notice({"phase": "Progressing"},
                            {"phase": "Holding", "holdingSince": "t2"}, body, at)  # fmt: skip
    assert first and second and first[0] != second[0]  # a new hold is a new event


def test_a_namespaces_own_receivers_are_read_from_its_configmap_and_cached() -> None:
    reads: list[str] = []
    data = {"a": '[{"url": "http://127.0.0.1:1/a", "format": "slack"}]',
            "bad": '[{"urlFile": "/etc/passwd"}]', "broken": "[{"}  # fmt: skip

    def read(namespace: str) -> str | None:
        reads.append(namespace)
        return data.get(namespace)

    hooks = NamespaceWebhooks(read, ttl=60)
    assert [h.url for h in hooks("a")] == ["http://127.0.0.1:1/a"]
    assert hooks("a") and reads == ["a"]  # cached
    assert hooks("none") == []  # no ConfigMap
    assert hooks("bad") == [] and hooks("broken") == []  # refused, logged, nothing sent


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[{", "not JSON"),
        ('{"url": "http://x"}', "a list"),
        ('[{"url": "ftp://x"}]', r"\[0\]\.url: expected an http"),
        ('[{"url": "http://x", "urlFile": "/f"}]', "exactly one of url and urlFile"),
        ('[{"url": "http://x", "format": "teams"}]', "json or slack"),
        ('[{"url": "http://x", "events": ["Deleted"]}]', "Deleted not among"),
        ('[{"url": "http://x", "timeout": 0}]', "seconds in"),
        ('[{"url": "http://x", "retries": 9}]', "unknown keys retries"),
    ],
)
def test_bad_webhook_settings_name_the_entry(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_webhooks(raw)


@pytest.mark.timeout(300)
async def test_the_operator_notifies_a_promotion_once_while_a_receiver_hangs(
    api: client.ApiClient,
    kubeconfig: Path,
    crds_installed: None,
    sole_operator: None,
    namespace: str,
    prometheus: LocalPrometheus,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The operator with three receivers: one that answers, one that answers 500, one
    that hangs until the test lets it go. The Rollout is Promoted while the hanging
    receiver still holds the operator's request: delivery is off the loop."""
    got: list[dict[str, Any]] = []
    team: list[dict[str, Any]] = []
    hanging_calls: list[int] = []
    release = asyncio.Event()

    async def ok(request: web.Request) -> web.StreamResponse:
        got.append(await request.json())
        return web.Response(text="ok")

    async def team_channel(request: web.Request) -> web.StreamResponse:
        team.append(await request.json())
        return web.Response(text="ok")

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500)

    async def hanging(request: web.Request) -> web.StreamResponse:
        hanging_calls.append(1)
        await release.wait()
        return web.Response(text="late")

    runners, urls = [], {}
    for name, handler in (("ok", ok), ("broken", broken), ("hanging", hanging),
                          ("team", team_channel)):  # fmt: skip
        runner, urls[name] = await _receiver(handler)
        runners.append(runner)
    # The namespace's own receiver, in its ConfigMap (a team's channel, set by the team).
    theirs = [{"url": urls["team"] + "/t", "format": "slack", "events": ["Promoted"]}]
    _apply(kubeconfig, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "llm-optimizer-notifications", "namespace": namespace},
        "data": {"webhooks": json.dumps(theirs)}})  # fmt: skip
    hooks = [{"url": urls["hanging"] + "/h", "timeout": 60}, {"url": urls["broken"] + "/b"},
             {"url": urls["ok"] + "/ok", "namespaces": [namespace]}]  # fmt: skip
    env = {"LLMOPT_PROMETHEUS_URL": prometheus.url, "LLMOPT_ROLLOUT_TICK": "1",
           "LLMOPT_POLICY_TICK": "1", "LLMOPT_NOTIFY_WEBHOOKS": json.dumps(hooks)}  # fmt: skip
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", env)
    try:
        _apply(kubeconfig, _llmconfig(namespace))
        async with traffic(kubeconfig, namespace, prometheus, monkeypatch):
            _apply(kubeconfig, _rollout(namespace, "told", {
                "provider": "simulator", "model": "sim-medium",
                "parameters": {"temperature": "0.35"}}))  # fmt: skip
            ro = await _until_terminal(api, namespace, "told", timeout=200)
        assert ro["status"]["phase"] == "Promoted", ro["status"]
        for _ in range(100):  # the first notice (the hold at start, if any) reached it
            if hanging_calls:
                break
            await asyncio.sleep(0.1)
        assert hanging_calls and not release.is_set()  # promoted while it still hangs
        for _ in range(100):
            if any(p["event"] == "Promoted" for p in got):
                break
            await asyncio.sleep(0.1)
        promoted = [p for p in got if p["event"] == "Promoted"]
        assert len(promoted) == 1, got
        assert promoted[0]["name"] == "told" and promoted[0]["namespace"] == namespace
        for _ in range(100):
            if team:
                break
            await asyncio.sleep(0.1)
        assert len(team) == 1 and f"Rollout {namespace}/told" in team[0]["text"], team
    finally:
        release.set()
        operator.stop()
        for runner in runners:
            await runner.cleanup()
