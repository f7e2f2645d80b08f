"""``llm-optimizer set model|param LLMCONFIG …``: a person's change of an LLMConfig's
spec, as ``kubectl set image`` is for a Deployment's.

The change is checked against the LLMConfig's schema before anything is written, then
written as a merge patch carrying the resourceVersion it was made on (a concurrent
edit is never overwritten: exit 1, run again). With ``delivery: canary`` the operator
delivers it through a Rollout; otherwise it becomes the stable version at once.
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from ..api.llmconfig import LLMConfigSpec, Parameters
from ..api.validation import parse_spec
from .cluster import (
    FIELD_MANAGER,
    REQUESTED_BY,
    NotFound,
    connect,
    guarded,
    namespace,
    requester,
    timeout,
)


def _kind_of(alias: str) -> type | None:
    """The Python type of the parameter named ``alias`` (camelCase), None if unknown."""
    for name, info in Parameters.model_fields.items():
        if (info.alias or name) == alias:
            args = [a for a in typing.get_args(info.annotation) if a is not type(None)]
            base = typing.get_origin(args[0]) or args[0] if args else str
            return base if isinstance(base, type) else str
    return None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` (the value typed by the parameter's schema: whole numbers for
    maxTokens, a comma list for stop, decimal strings for the rest) or ``name-`` to
    remove the parameter."""
    if text.endswith("-") and "=" not in text:
        return text[:-1], None
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"{text!r}: want name=value (or name- to remove it)")
    kind = _kind_of(name)
    known = ", ".join(sorted(i.alias or n for n, i in Parameters.model_fields.items()))
    if kind is None:
        raise ValueError(f"{name!r} is not a parameter; one of {known}")
    if kind is int:
        try:
            return name, int(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not a whole number") from None
    if kind is list:
        return name, [v for v in value.split(",") if v]
    return name, value


def add_parser(sub: Any) -> None:
    st = sub.add_parser(
        "set",
        help="change an LLMConfig's model or parameters (a person's edit)",
        description="Change an LLMConfig's spec:\n"
        "  llm-optimizer set model support-bot gpt-4o-mini [--provider openai]\n"
        "  llm-optimizer set param support-bot temperature=0.3 maxTokens=512 topP-\n\n"
        "Checked against the schema first; written with the resourceVersion it was made\n"
        "on. Exit codes: 0 written, 1 invalid or refused (nothing written), 2 cluster\n"
        "unreachable or bad usage, 3 not found.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("what", choices=["model", "param"])
    st.add_argument("llmconfig", help="LLMConfig name")
    st.add_argument("values", nargs="+", help="the model, or name=value / name- pairs")
    st.add_argument("--provider", help="with model: the provider too")
    st.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    st.set_defaults(func=run)


def _change(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields to write; ValueError for bad usage."""
    if args.what == "model":
        if len(args.values) != 1:
            raise ValueError("set model: give one model")
        change: dict[str, Any] = {"model": args.values[0]}
        if args.provider:
            change["provider"] = args.provider
        return change
    if args.provider:
        raise ValueError("--provider: only with set model")
    return {"parameters": dict(parse_assignment(v) for v in args.values)}


def run(args: argparse.Namespace) -> int:
    try:
        change = _change(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ns = namespace(args.namespace)
    what = f"llmconfig {ns}/{args.llmconfig}"

    def body() -> int:
        custom = connect()
        try:
            current = custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, "llmconfigs", args.llmconfig, _request_timeout=timeout()
            )
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(what) from None
            raise
        spec = dict(current.get("spec") or {})
        if "parameters" in change:
            merged = {**(spec.get("parameters") or {}), **change["parameters"]}
            spec["parameters"] = {k: v for k, v in merged.items() if v is not None}
        else:
            spec.update(change)
        parse_spec(LLMConfigSpec, spec)  # InvalidSpec: one line, exit 1, nothing written
        if spec == current.get("spec"):
            print(f"{what}: unchanged")
            return 0
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "llmconfigs", args.llmconfig,
            {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"],
                          "annotations": {REQUESTED_BY: requester()}},
             "spec": change},
            field_manager=FIELD_MANAGER, _request_timeout=timeout(),
        )  # fmt: skip
        print(f"{what}: {' '.join(args.values)} written")
        return 0

    return guarded(what, body)
