"""The ``llm-optimizer`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from ..api.kinds import ALL_KINDS
from ..api.validation import InvalidSpec, parse_spec


def _cmd_operator(args: argparse.Namespace) -> int:
    import kopf

    from .. import handlers  # noqa: F401  (importing registers the handlers)

    if args.prometheus_url:
        os.environ["LLMOPT_PROMETHEUS_URL"] = args.prometheus_url
    if args.peering:
        priority = args.priority
        if args.priority_from_ordinal:
            pod = os.environ.get("POD_NAME") or socket.gethostname()
            ordinal = pod.rsplit("-", 1)[-1]
            if not ordinal.isdigit():
                print(f"error: --priority-from-ordinal: {pod!r} has no -N suffix", file=sys.stderr)
                return 2
            priority = 100 - int(ordinal)
        os.environ["LLMOPT_PEERING_NAME"] = args.peering
        os.environ["LLMOPT_PEERING_PRIORITY"] = str(priority)
    level = "debug" if args.verbose else args.log_level
    kopf.configure(
        verbose=level == "debug",
        log_format=kopf.LogFormat[args.log_format.upper()],
        # JSON lines name the object they are about under "object", as kopf does.
        log_refkey="object" if args.log_format == "json" else None,
    )
    logging.getLogger().setLevel(level.upper())
    namespaces = args.namespace or []
    os.environ["LLMOPT_NAMESPACES"] = ",".join(namespaces)
    from ..handlers.environment import check_environment

    try:
        check_environment()  # each read again where it is used; a bad value stops here
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if namespaces and not any(set(n) & set("*?[!") for n in namespaces):
        # Watching named namespaces needs nothing cluster-wide: no CRD/namespace scanning.
        # (A glob such as "team-a-*" does: kopf lists namespaces to match it.)
        os.environ["LLMOPT_NO_SCANNING"] = "1"

    async def main() -> None:
        runner = None
        if args.metrics_port:
            from ..handlers import clients, telemetry

            clients.load_config()
            from ..handlers.policy import TICK_SECONDS

            runner = await telemetry.serve(args.metrics_port, policy_tick=TICK_SECONDS)
        try:
            await _operate(namespaces, args)
        finally:
            if runner is not None:
                await runner.cleanup()

    asyncio.run(main())
    return 0


# A restarting API server answers before it serves the custom resources' routes; a watch
# that resumes in that moment gets 404 and kopf ends the operator. Start it again.
OPERATOR_RESTARTS = 5


async def _operate(namespaces: list[str], args: argparse.Namespace) -> None:
    """Run kopf; after a 404 on a watched kind (routes not served yet after an API
    server restart), start again after a backoff, at most ``OPERATOR_RESTARTS`` times."""
    import kopf

    # kopf does not export its 404 error; it is the one this restart is for.
    from kopf._cogs.clients.errors import APINotFoundError

    for attempt in range(OPERATOR_RESTARTS + 1):
        try:
            await kopf.operator(
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=args.liveness or None,
                standalone=not args.peering,
            )
            return
        except APINotFoundError as exc:
            if attempt == OPERATOR_RESTARTS:
                raise
            delay = min(2.0**attempt, 30.0)
            print(
                f"operator: a watched kind answered 404 ({exc}); starting again in {delay:g}s",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)


def _cmd_crds(args: argparse.Namespace) -> int:
    from ..api.crd import render_all

    out = Path(args.out)
    rendered = render_all()
    if args.check:
        stale = [
            n
            for n, text in rendered.items()
            if not (out / n).exists() or (out / n).read_text() != text
        ]
        if stale:
            print(f"error: {', '.join(stale)} out of date; run `make crds`", file=sys.stderr)
            return 1
        print("crds up to date")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    by_kind = {k.kind: k for k in ALL_KINDS}
    failed = 0
    for file in args.files:
        try:
            docs = [d for d in yaml.safe_load_all(Path(file).read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            print(f"{file}: error: {exc}".splitlines()[0], file=sys.stderr)
            failed += 1
            continue
        for doc in docs:
            kind = by_kind.get(doc.get("kind", ""))
            name = (doc.get("metadata") or {}).get("name", "?")
            if kind is None or doc.get("apiVersion") != kind.api_version:
                continue
            try:
                parse_spec(kind.spec_model, doc.get("spec"))
            except InvalidSpec as exc:
                print(f"{file}: {kind.kind}/{name}: {exc}", file=sys.stderr)
                failed += 1
            else:
                print(f"{file}: {kind.kind}/{name}: valid")
    return 1 if failed else 0


def _cmd_gateway(args: argparse.Namespace) -> int:
    from ..gateway.evaluators import check_specs, parse_specs
    from ..gateway.server import GatewaySettings, run

    if not args.config and not args.configmap:
        print(
            "error: give --config FILE (the mounted ConfigMap key) or --configmap NS/NAME",
            file=sys.stderr,
        )
        return 2
    try:
        check_specs(parse_specs(args.evaluators))
    except (ValueError, KeyError) as exc:
        print(f"error: --evaluators: {exc}", file=sys.stderr)
        return 2
    if args.pricing:
        from ..providers.pricing import load_catalog

        try:
            load_catalog(args.pricing)
        except (OSError, ValueError) as exc:
            print(f"error: --pricing: {exc}", file=sys.stderr)
            return 2
    if args.api_keys_file:
        from ..gateway.auth import KeyFile

        try:
            KeyFile(Path(args.api_keys_file))
        except (OSError, ValueError) as exc:
            print(f"error: --api-keys-file: {exc}", file=sys.stderr)
            return 2
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLines()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    run(
        GatewaySettings(
            host=args.host,
            port=args.port,
            config_file=Path(args.config) if args.config else None,
            configmap=args.configmap,
            configmap_key=args.configmap_key,
            sticky_header=args.sticky_header.lower(),
            upstream_timeout=args.upstream_timeout,
            max_attempts=args.max_attempts,
            max_body_bytes=args.max_body_bytes,
            max_in_flight=args.max_in_flight,
            client_body_timeout=args.client_body_timeout,
            idle_timeout=args.idle_timeout,
            log_content=args.log_content,
            evaluators=args.evaluators,
            pricing=Path(args.pricing) if args.pricing else None,
            rate_limit=args.rate_limit,
            record=Path(args.record) if args.record else None,
            record_redaction=args.record_redaction,
            otlp_endpoint=args.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            fallback_to_stable=args.fallback_to_stable,
            api_keys_file=Path(args.api_keys_file) if args.api_keys_file else None,
        )
    )
    return 0


class JsonLines(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and the error, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _cmd_simulator(args: argparse.Namespace) -> int:
    from ..providers.replay import ReplayProvider, load_dataset
    from ..providers.serve import run
    from ..providers.simulator import JudgeSettings, SimulatorProvider, load_fleet

    try:
        provider: SimulatorProvider | ReplayProvider
        if args.provider == "replay":
            provider = ReplayProvider(load_dataset(args.dataset), time_scale=args.time_scale)
        else:
            provider = SimulatorProvider(
                load_fleet(args.fleet),
                time_scale=args.time_scale,
                judge=JudgeSettings(
                    bias=args.judge_bias,
                    noise=args.judge_noise,
                    strong_margin=args.judge_strong_margin,
                ),
            )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(provider, args.host, args.port, plain=args.plain)
    return 0


def _cmd_loadgen(args: argparse.Namespace) -> int:
    import json

    from ..loadgen import LoadGenerator, format_summary, load_prompts

    if (args.rate is None) == (args.concurrency is None):
        print("error: give exactly one of --rate or --concurrency", file=sys.stderr)
        return 2
    try:
        prompts = load_prompts(args.prompts, args.prompt_limit)
    except (OSError, ValueError) as exc:
        print(f"error: --prompts: {exc}", file=sys.stderr)
        return 2
    gen = LoadGenerator(
        args.url,
        prompts,
        model=args.model,
        stream=args.stream,
        timeout=args.timeout,
        users=args.users,
        seed=args.seed,
        progress=sys.stderr.isatty() and not args.quiet,
    )
    summary = asyncio.run(
        gen.run(
            rate=args.rate,
            concurrency=args.concurrency,
            requests=args.requests,
            duration=args.duration,
            arrivals=args.arrivals,
        )
    ).as_dict()
    print(json.dumps(summary, indent=2) if args.output == "json" else format_summary(summary))
    return 0 if summary["ok"] else 1


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915  argparse declarations
    parser = argparse.ArgumentParser(
        prog="llm-optimizer",
        description="Keep LLM applications on their best configuration (Kubernetes operator).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""first steps:
  llm-optimizer get policies -A            what every policy is doing, in a table
  llm-optimizer describe policy NAME       its decisions, why, what next; its trials
  llm-optimizer history CONFIG             an LLMConfig's versions and where they came from
  llm-optimizer rollout promote NAME       skip the current pause or analysis step
  llm-optimizer rollout abort NAME         roll back now
  llm-optimizer export-study POLICY        the trials as CSV (--format json)
  kubectl llmopt ...                       the same, as a kubectl plugin

exit codes: 0 ok, 1 refused by the API server, 2 cluster unreachable or bad usage,
3 not found. `llm-optimizer COMMAND --help` explains each command.""",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _cluster_flags(parser, None)
    parser.set_defaults(root_parser=parser)
    sub = parser.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (kopf)")
    op.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable; globs such as 'team-a-*' and exclusions "
        "'!kube-*' allowed, as kopf takes them): one way to split the load across operator "
        "processes; default: cluster-wide",
    )
    op.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL; empty to disable",
    )
    op.add_argument(
        "--prometheus-url",
        default=os.environ.get("LLMOPT_PROMETHEUS_URL", ""),
        help="Prometheus for rollout analysis (without it, analysis steps hold)",
    )
    op.add_argument(
        "--peering", default="", help="kopf peering name for HA (off by default: one replica)"
    )
    op.add_argument("--priority", type=int, default=0, help="peering priority of this process")
    op.add_argument(
        "--priority-from-ordinal",
        action="store_true",
        help="peering priority 100 - N from a StatefulSet pod name ending in -N ($POD_NAME "
        "or the hostname): distinct per replica, replica 0 first",
    )
    op.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("LLMOPT_METRICS_PORT", "0")),
        help="serve /metrics and /readyz on this port (0: off)",
    )
    op.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    op.add_argument(
        "--log-format",
        choices=["plain", "full", "json"],
        default="plain",
        help="plain lines, full (with the object each is about) or json (one object a line)",
    )
    op.add_argument("-v", "--verbose", action="store_true", help="the same as --log-level debug")
    op.set_defaults(func=_cmd_operator)

    crds = sub.add_parser("crds", help="write (or --check) the CRDs generated from the API models")
    crds.add_argument("--out", default="crds")
    crds.add_argument("--check", action="store_true", help="fail if crds/ is out of date")
    crds.set_defaults(func=_cmd_crds)

    gw = sub.add_parser(
        "gateway",
        help="run the OpenAI-compatible gateway sidecar",
        description="Split chat requests across the LLMConfig's variants by the ConfigMap's "
        "weights, call providers, score quality, export Prometheus metrics.",
    )
    gw.add_argument("--config", help="path of the mounted ConfigMap key (reloaded on change)")
    gw.add_argument("--configmap", help="NAMESPACE/NAME to watch through the Kubernetes API")
    gw.add_argument("--configmap-key", default="variants.json")
    gw.add_argument("--host", default="0.0.0.0")
    gw.add_argument("--port", type=int, default=8080)
    gw.add_argument(
        "--sticky-header",
        default="x-llmopt-sticky-key",
        help="header whose value keeps a user on one variant (else the request id)",
    )
    gw.add_argument("--upstream-timeout", type=float, default=120.0, help="seconds per attempt")
    gw.add_argument("--max-attempts", type=int, default=2, help="attempts on retryable errors")
    gw.add_argument(
        "--fallback-to-stable",
        action="store_true",
        help="answer a candidate's request from stable when it fails after its retries "
        "(5xx, timeout, 429); still counted as the candidate's error, and as a fallback",
    )
    gw.add_argument(
        "--api-keys-file",
        help="accept /v1 requests only with Authorization: Bearer <key>, keys one per line "
        "in this file (a Secret's key mounted as a file; re-read when it changes)",
    )
    gw.add_argument("--max-body-bytes", type=int, default=1 << 20)
    gw.add_argument(
        "--max-in-flight",
        type=int,
        default=2048,
        help="requests in progress before new ones get 503 overloaded",
    )
    gw.add_argument("--client-body-timeout", type=float, default=30.0)
    gw.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        help="seconds before a connection that is idle, or has not finished sending its "
        "request headers, is closed",
    )
    gw.add_argument(
        "--evaluators",
        default="ground_truth=1",
        help='name=rate list, e.g. "ground_truth=1,refusal=0.2,length=1", or a JSON '
        'list of {"name","rate","options"}',
    )
    gw.add_argument(
        "--pricing",
        help="pricing to merge over the default: our YAML catalog (models: {NAME: {input, "
        "output}} per 1M tokens) or LiteLLM's cost map JSON (model_prices_and_context_"
        "window.json)",
    )
    gw.add_argument("--rate-limit", help="per-client limit RPS[:BURST] (client: X-Client-Id)")
    gw.add_argument("--record", help="append traffic to this JSONL file (replay format)")
    gw.add_argument("--record-redaction", default="pii", choices=["none", "pii", "hash"])
    gw.add_argument("--otlp-endpoint", help="OTLP/HTTP endpoint for spans (default: off)")
    gw.add_argument(
        "--log-content",
        action="store_true",
        help="log prompts and responses at debug level (never API keys)",
    )
    gw.add_argument("--log-format", choices=["plain", "json"], default="plain")
    gw.add_argument("-v", "--verbose", action="store_true")
    gw.set_defaults(func=_cmd_gateway)

    sim = sub.add_parser("simulator", help="serve the simulator or replay provider (OpenAI API)")
    sim.add_argument("--provider", choices=["simulator", "replay"], default="simulator")
    sim.add_argument("--fleet", help="simulator fleet YAML (default: the packaged fleet)")
    sim.add_argument("--dataset", help="replay dataset (CSV or JSONL)")
    sim.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="multiply simulated latencies (e.g. 0.1 for fast demos)",
    )
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8090)
    sim.add_argument(
        "--plain",
        action="store_true",
        help="answer as a plain OpenAI-compatible server, as a real provider would: no "
        "ground truth (the llmopt field) in any answer",
    )
    sim.add_argument(
        "--judge-bias",
        type=float,
        default=0.0,
        help="model sim-judge (a pairwise judge of the answers this server gave): the "
        "probability it prefers the first answer whatever they are (default 0)",
    )
    sim.add_argument(
        "--judge-noise",
        type=float,
        default=0.1,
        help="model sim-judge: the standard deviation of the noise on the quality "
        "difference it sees (default 0.1)",
    )
    sim.add_argument(
        "--judge-strong-margin",
        type=float,
        default=0.15,
        help="model sim-judge, graded verdicts: the quality difference past which it says "
        "one answer is much better (default 0.15)",
    )
    sim.set_defaults(func=_cmd_simulator)

    lg = sub.add_parser("loadgen", help="drive a gateway and summarize latency, cost, quality")
    lg.add_argument("--url", default="http://127.0.0.1:8080")
    lg.add_argument("--rate", type=float, help="open loop: requests per second")
    lg.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    lg.add_argument("--requests", type=int, help="stop after this many")
    lg.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    lg.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson")
    lg.add_argument("--prompts", default="builtin", help="builtin, replay, or a file")
    lg.add_argument("--prompt-limit", type=int, default=None)
    lg.add_argument("--model", default="default", help="model field sent (the variant decides)")
    lg.add_argument("--users", type=int, default=0, help="distinct sticky keys (0: none)")
    lg.add_argument("--stream", action="store_true")
    lg.add_argument("--timeout", type=float, default=120.0)
    lg.add_argument("--seed", type=int, default=None)
    lg.add_argument("--quiet", action="store_true", help="no progress bar")
    lg.add_argument("-o", "--output", choices=["table", "json"], default="table")
    lg.set_defaults(func=_cmd_loadgen)

    from .cycle import add_parser as add_cycle_parser
    from .rollout import add_parser as add_rollout_parser

    add_cycle_parser(sub)

    add_rollout_parser(sub)

    from .accept import add_parser as add_accept_parser
    from .undo import add_parser as add_undo_parser

    add_undo_parser(sub)
    add_accept_parser(sub)

    from .inspect import add_parsers as add_inspect_parsers

    add_inspect_parsers(sub)

    from .completion import add_parser as add_completion_parser
    from .rollout import add_status_parser
    from .set_config import add_parser as add_set_parser
    from .train_router import add_parser as add_train_router_parser

    add_status_parser(sub)
    add_set_parser(sub)
    add_completion_parser(sub)
    add_train_router_parser(sub)

    val = sub.add_parser("validate", help="validate YAML files of our kinds offline (for CI)")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_cmd_validate)
    for name, command in sub.choices.items():
        if name in CLUSTER_COMMANDS:
            _cluster_flags(command, argparse.SUPPRESS)  # also after the command, as kubectl
    return parser


# Commands that talk to the cluster through the kubeconfig: kubectl's flags apply.
CLUSTER_COMMANDS = {
    "get", "describe", "history", "recommendations", "export-study", "rollout", "status",
    "set", "undo", "accept", "cycle",
}  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm-optimizer")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _cluster_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """kubectl's --kubeconfig, --context and --request-timeout."""
    parser.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)"
    )
    parser.add_argument(
        "--context", default=default, help="kubeconfig context (default: the current one)"
    )
    parser.add_argument(
        "--request-timeout",
        default=default,
        type=_request_timeout,
        help='seconds (or "30s", "1m") each API request may take (default: 5 to connect, '
        "20 to answer)",
    )


def _request_timeout(text: str) -> float:
    from ..api.common import parse_duration

    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want seconds or a duration") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .cluster import TARGET

    TARGET.kubeconfig = getattr(args, "kubeconfig", None)
    TARGET.context = getattr(args, "context", None)
    TARGET.request_timeout = getattr(args, "request_timeout", None)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


def kubectl_plugin() -> int:
    """``kubectl llmopt ACTION NAME`` is ``llm-optimizer rollout ACTION NAME``; any other
    command (get, describe, history, recommendations, export-study, …) is passed as is."""
    from .rollout import ACTIONS

    argv = sys.argv[1:]
    if argv and argv[0] in ACTIONS:
        return main(["rollout", *argv])
    return main(argv)
