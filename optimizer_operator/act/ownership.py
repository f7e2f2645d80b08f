"""Owner references, so Kubernetes' garbage collector removes what we create."""

from __future__ import annotations

from typing import Any


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller owner reference to the custom resource ``owner`` (a body dict)."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
