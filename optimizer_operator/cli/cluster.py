"""The one place the CLI reaches the cluster: credentials, the namespace, timeouts."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..act import rollouts
from ..api.validation import InvalidSpec

# (connect, read) seconds for one API request: a hung API server gives a clear error.
TIMEOUT = (5, 20)


@dataclass
class Target:
    """Which cluster and how patiently: ``--kubeconfig``, ``--context``,
    ``--request-timeout`` (kubectl's flags), set once by ``main``."""

    kubeconfig: str | None = None
    context: str | None = None
    request_timeout: float | None = None


TARGET = Target()


def timeout() -> tuple[float, float]:
    """(connect, read) seconds for one API request: ``--request-timeout`` for both when
    given, else the defaults."""
    if TARGET.request_timeout:
        return (TARGET.request_timeout, TARGET.request_timeout)
    return TIMEOUT


def _kubeconfig() -> str | None:
    return TARGET.kubeconfig or os.environ.get("KUBECONFIG")


def _context() -> dict[str, Any]:
    """The kubeconfig context in use (``--context``, else the current one)."""
    contexts, active = config.list_kube_config_contexts(config_file=_kubeconfig())
    if TARGET.context:
        for c in contexts:
            if c.get("name") == TARGET.context:
                return dict(c.get("context") or {})
        raise config.ConfigException(f"context {TARGET.context!r} not in the kubeconfig")
    return dict(active.get("context") or {})
# The CLI's writes, as managedFields and the audit show them.
FIELD_MANAGER = "llm-optimizer-cli"
REQUESTED_BY = "optimizer.llmops.dev/requested-by"


def connect() -> client.CustomObjectsApi:
    """The kubeconfig's context (``--kubeconfig``/``--context``) when either is given,
    else in-cluster credentials when running in a pod, else the kubeconfig
    ($KUBECONFIG); raises ``config.ConfigException`` or ``OSError`` when none works."""
    if TARGET.kubeconfig or TARGET.context:
        config.load_kube_config(config_file=_kubeconfig(), context=TARGET.context)
    else:
        from ..handlers.clients import load_config

        load_config()
    return client.CustomObjectsApi()


def namespace(arg: str | None) -> str:
    """``-n``'s namespace, else the kubeconfig context's, else ``default``."""
    if arg:
        return arg
    try:
        return str(_context().get("namespace") or "default")
    except (config.ConfigException, OSError, TypeError):
        return "default"


def requester() -> str:
    """Who is asking, as the cluster will know them: the kubeconfig context's user, or
    the pod's service account (the ``sub`` of its token) when running in a cluster;
    ``unknown`` otherwise."""
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    if os.path.exists(token):
        try:
            with open(token) as f:
                payload = f.read().strip().split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            return str(claims.get("sub") or "unknown")
        except (OSError, IndexError, ValueError):
            return "unknown"
    try:
        return str(_context().get("user") or "unknown")
    except (config.ConfigException, OSError, TypeError):
        return "unknown"


class NotFound(Exception):
    """An object the command needs does not exist (exit 3); the message names it."""


class Refused(Exception):
    """The request cannot be carried out as asked (exit 4); the message says why."""


def guarded(what: str, body: Callable[[], int]) -> int:
    """Run a command's ``body``; each way it can fail becomes one line on stderr and its
    exit code: 1 an API error or an invalid object, 2 the cluster unreachable, 3 not
    found, 4 refused."""
    try:
        return body()
    except NotFound as exc:
        print(f"error: {exc} not found", file=sys.stderr)
        return 3
    except Refused as exc:
        print(f"error: {what}: {exc}", file=sys.stderr)
        return 4
    except (InvalidSpec, ValueError) as exc:
        print(f"error: {what}: invalid object: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"error: {what}: {exc.status} {exc.reason}", file=sys.stderr)
        return 1
    except (config.ConfigException, OSError) as exc:
        print(f"error: cannot reach the cluster: {exc}", file=sys.stderr)
        return 2


def request_rollout(
    custom: client.CustomObjectsApi,
    ns: str,
    base: str,
    build: Callable[[str], dict[str, Any]],
) -> tuple[str, bool]:
    """Create the Rollout ``build(name)`` under the first free name of ``base``, once:
    when the same request still runs it is adopted, not made twice. Returns (name,
    whether it was running already)."""
    free = rollouts.free_name(custom, ns, base)
    if free is None:
        raise Refused(f"20 Rollouts named {base}[-N] already ended; delete some")
    name, running = free
    if running is None:
        rollouts.create_rollout(custom, build(name))
    return name, running is not None
