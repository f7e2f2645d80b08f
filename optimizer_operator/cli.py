"""The ``llm-optimizer`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import yaml

from .api.kinds import ALL_KINDS
from .api.validation import InvalidSpec, parse_spec


def _cmd_operator(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers  # noqa: F401  (importing registers the handlers)

    if args.peering:
        os.environ["LLMOPT_PEERING_NAME"] = args.peering
        os.environ["LLMOPT_PEERING_PRIORITY"] = str(args.priority)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    namespaces = args.namespace or []
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=args.liveness or None,
            standalone=not args.peering,
        )
    )
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from .api.crd import render_all

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-optimizer",
        description="Keep LLM applications on their best configuration (Kubernetes operator).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (kopf)")
    op.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: cluster-wide",
    )
    op.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL; empty to disable",
    )
    op.add_argument(
        "--peering", default="", help="kopf peering name for HA (off by default: one replica)"
    )
    op.add_argument("--priority", type=int, default=0, help="peering priority of this process")
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=_cmd_operator)

    crds = sub.add_parser("crds", help="write (or --check) the CRDs generated from the API models")
    crds.add_argument("--out", default="crds")
    crds.add_argument("--check", action="store_true", help="fail if crds/ is out of date")
    crds.set_defaults(func=_cmd_crds)

    val = sub.add_parser("validate", help="validate YAML files of our kinds offline (for CI)")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
