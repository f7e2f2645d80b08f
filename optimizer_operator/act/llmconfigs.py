"""LLMConfig reads and the status writes other kinds make on it."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.common import GROUP, VERSION
from ..api.kinds import LLMCONFIG
from .configmap import REQUEST_TIMEOUT


def read_llmconfig(
    custom: client.CustomObjectsApi, namespace: str, name: str
) -> dict[str, Any] | None:
    """The LLMConfig ``name``, or None when it does not exist."""
    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, LLMCONFIG.plural, name, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj
