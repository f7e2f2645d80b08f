"""Prometheus as users run it: the real Prometheus started with its own web config —
HTTPS with a certificate from a throwaway CA, and basic auth — scraping the real
gateway. The operator reads it with the CA and credentials it is given; wrong
credentials and an untrusted certificate each give a condition naming the cause, and a
Rollout holds. Bearer tokens and tenant headers are what the gateways in front of
Thanos, Mimir and managed Prometheus check; Prometheus's own web config has no bearer
auth, so a small proxy in front of the real Prometheus checks them here (it says so)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from optimizer_operator.api import GROUP, VERSION
from optimizer_operator.local.prometheus import LocalPrometheus
from optimizer_operator.observe.prometheus import MetricsUnavailable, PrometheusSource
from optimizer_operator.observe.prometheus_access import PrometheusAccess
from tests.certificates import ServerCertificate, make_server_certificate
from tests.conftest import OperatorProcess
from tests.gateway.conftest import serve
from tests.integration.test_canary_e2e import (
    ANALYSIS,
    _apply,
    _llmconfig,
    _rollout,
    _until_terminal,
    traffic,
)

USER, PASSWORD = "llmopt", "s3cret-pw"


@pytest.fixture()
def certificate(tmp_path: Path) -> ServerCertificate:
    return make_server_certificate(tmp_path / "tls")


@pytest.fixture()
def secured(tmp_path: Path, certificate: ServerCertificate) -> Iterator[LocalPrometheus]:
    """The real Prometheus over HTTPS behind basic auth, scraping nothing yet."""
    prom = LocalPrometheus(
        tmp_path / "prom",
        [],
        tls=(certificate.cert, certificate.key),
        ca_file=certificate.ca,
        basic_auth=(USER, PASSWORD),
    )
    prom.start()
    yield prom
    prom.stop()


def _password(tmp_path: Path, password: str) -> str:
    path = tmp_path / f"password-{abs(hash(password))}"
    path.write_text(password + "\n")  # as a Secret file may end
    return str(path)


def test_tls_and_basic_auth_work_and_each_wrong_setting_names_its_cause(
    secured: LocalPrometheus, certificate: ServerCertificate, tmp_path: Path
) -> None:
    good = PrometheusAccess(
        ca_file=str(certificate.ca), username=USER, password_file=_password(tmp_path, PASSWORD)
    )
    assert PrometheusSource(secured.url, timeout=5, access=good).value("vector(42)") == 42.0
    wrong = PrometheusAccess(
        ca_file=str(certificate.ca), username=USER, password_file=_password(tmp_path, "nope")
    )
    with pytest.raises(MetricsUnavailable, match=r"refused the credentials \(HTTP 401"):
        PrometheusSource(secured.url, timeout=5, access=wrong).value("vector(1)")
    untrusted = PrometheusAccess(username=USER, password_file=_password(tmp_path, PASSWORD))
    with pytest.raises(MetricsUnavailable, match=r"TLS failed.*CERTIFICATE_VERIFY_FAILED.*CA_FILE"):
        PrometheusSource(secured.url, timeout=5, access=untrusted).value("vector(1)")
    skipping = PrometheusAccess(
        insecure_skip_verify=True, username=USER, password_file=_password(tmp_path, PASSWORD)
    )
    assert PrometheusSource(secured.url, timeout=5, access=skipping).value("vector(7)") == 7.0


def test_bad_settings_are_refused_naming_the_variable(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    for env, message in (
        ({"LLMOPT_PROMETHEUS_CA_FILE": "/nowhere/ca.pem"}, "CA_FILE: no file"),
        ({"LLMOPT_PROMETHEUS_HEADERS": "X-Scope-OrgID: a"}, "HEADERS: not JSON"),
        ({"LLMOPT_PROMETHEUS_HEADERS": '{"Authorization": "x"}'}, "cannot be set there"),
        ({"LLMOPT_PROMETHEUS_USERNAME": "u"}, "USERNAME and LLMOPT_PROMETHEUS_PASSWORD_FILE"),
        ({"LLMOPT_PROMETHEUS_BEARER_TOKEN_FILE": str(token),
          "LLMOPT_PROMETHEUS_USERNAME": "u",
          "LLMOPT_PROMETHEUS_PASSWORD_FILE": str(token)}, "choose one"),
        ({"LLMOPT_PROMETHEUS_INSECURE_SKIP_VERIFY": "yes"}, "expected true or false"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            PrometheusAccess.from_env(env)
    assert PrometheusAccess.from_env({}) == PrometheusAccess()  # verification on by default


async def test_a_bearer_token_and_tenant_header_reach_the_server_and_a_rotated_token_counts(
    prometheus: LocalPrometheus, tmp_path: Path
) -> None:
    """A proxy in front of the session's (real, plain) Prometheus lets a query through
    only with the current token and the tenant header, as Mimir's or Thanos's gateways
    do; it answers 503 to the first request it sees, once."""
    expected = {"token": "first-token"}
    seen: list[int] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        seen.append(1)
        if len(seen) == 1:
            return web.Response(status=503, text="warming up")
        if request.headers.get("Authorization") != f"Bearer {expected['token']}":
            return web.Response(status=401, text="bad token")
        if request.headers.get("X-Scope-OrgID") != "team-a":
            return web.Response(status=400, text="no tenant")
        async with aiohttp.ClientSession() as s, s.get(
            prometheus.url + request.path, params=request.query
        ) as upstream:
            return web.Response(status=upstream.status, body=await upstream.read(),
                                content_type="application/json")  # fmt: skip

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", proxy)
    runner, url = await serve(app)
    try:
        token = tmp_path / "token"
        token.write_text("first-token\n")
        access = PrometheusAccess.from_env({
            "LLMOPT_PROMETHEUS_BEARER_TOKEN_FILE": str(token),
            "LLMOPT_PROMETHEUS_HEADERS": '{"X-Scope-OrgID": "team-a"}',
        })  # fmt: skip
        source = PrometheusSource(url, timeout=5, access=access)
        # The first answer is a 503: tried once more within the timeout, then answered.
        assert await asyncio.to_thread(source.value, "vector(3)") == 3.0
        assert len(seen) == 2
        expected["token"] = "rotated-token"  # the Secret rotates: the file changes
        with pytest.raises(MetricsUnavailable, match="refused the credentials"):
            await asyncio.to_thread(source.value, "vector(3)")
        token.write_text("rotated-token\n")
        assert await asyncio.to_thread(source.value, "vector(4)") == 4.0  # no restart
    finally:
        await runner.cleanup()


async def test_a_server_failing_every_try_costs_two_tries_within_the_timeout() -> None:
    tries: list[float] = []

    async def unavailable(request: web.Request) -> web.StreamResponse:
        tries.append(time.monotonic())
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", unavailable)
    runner, url = await serve(app)
    try:
        source = PrometheusSource(url, timeout=2)
        with pytest.raises(MetricsUnavailable, match="503"):
            await asyncio.to_thread(source.value, "vector(1)")
        assert len(tries) == 2  # the library's own retries (3 with backoff) are off
    finally:
        await runner.cleanup()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind)


@pytest.mark.timeout(420)
async def test_the_operator_through_tls_and_basic_auth(
    api: client.ApiClient,
    kubeconfig: Path,
    crds_installed: None,
    sole_operator: None,
    namespace: str,
    secured: LocalPrometheus,
    certificate: ServerCertificate,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Right CA and credentials: a Rollout is promoted on the secured Prometheus's
    evidence. The same operator with a wrong password, then without the CA: each next
    Rollout holds with Degraded=True MetricsUnavailable naming the cause."""
    base = {
        "LLMOPT_PROMETHEUS_URL": secured.url,
        "LLMOPT_ROLLOUT_TICK": "1",
        "LLMOPT_POLICY_TICK": "1",
        "LLMOPT_PROMETHEUS_USERNAME": USER,
    }
    good = {**base, "LLMOPT_PROMETHEUS_CA_FILE": str(certificate.ca),
            "LLMOPT_PROMETHEUS_PASSWORD_FILE": _password(tmp_path, PASSWORD)}  # fmt: skip
    wrong = {**good, "LLMOPT_PROMETHEUS_PASSWORD_FILE": _password(tmp_path, "wrong")}
    untrusted = {**base, "LLMOPT_PROMETHEUS_PASSWORD_FILE": _password(tmp_path, PASSWORD)}
    custom = client.CustomObjectsApi(api)
    _apply(kubeconfig, _llmconfig(namespace))
    analysis = copy.deepcopy(ANALYSIS)
    async with traffic(kubeconfig, namespace, secured, monkeypatch):
        for name, env, cause, temperature in (
            ("good", good, None, "0.35"),
            ("wrong", wrong, "refused the credentials (HTTP 401", "0.4"),
            ("untrusted", untrusted, "CERTIFICATE_VERIFY_FAILED", "0.45"),
        ):
            operator = OperatorProcess(kubeconfig, tmp_path / f"operator-{name}.log", env)
            try:
                candidate = {"provider": "simulator", "model": "sim-medium",
                             "parameters": {"temperature": temperature}}  # fmt: skip
                body = _rollout(namespace, name, candidate)
                body["spec"]["analysis"] = analysis
                _apply(kubeconfig, body)
                if cause is None:
                    ro = await _until_terminal(api, namespace, name, timeout=200)
                    assert ro["status"]["phase"] == "Promoted", ro["status"]
                    continue
                deadline = time.monotonic() + 90
                while True:
                    ro = custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, "rollouts", name
                    )
                    st = ro.get("status") or {}
                    if st.get("phase") == "Holding" and cause in st.get("message", ""):
                        break
                    assert time.monotonic() < deadline, f"{name}: {st}"
                    await asyncio.sleep(1)
                degraded = _condition(ro, "Degraded")
                assert degraded["status"] == "True", degraded
                assert degraded["reason"] == "MetricsUnavailable" and cause in degraded["message"]
                assert st.get("canaryWeight", 0) < 100
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, "rollouts", name, {"spec": {"abort": True}}
                )
                await _until_terminal(api, namespace, name, timeout=60)
            finally:
                operator.stop()
