"""Thin kopf handlers: parse, call domain code, write status. Importing registers them."""

from . import llmconfig, policy, rollout, settings

__all__ = ["llmconfig", "policy", "rollout", "settings"]
