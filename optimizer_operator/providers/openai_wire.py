"""The OpenAI chat-completions wire format, rendered and parsed in one place."""

from __future__ import annotations

from typing import Any

from ..api.llmconfig import Parameters
from .base import ChatResult

# Our extension on responses from the simulator server: ground truth for evaluation.
EXTENSION = "llmopt"


def parameters_to_openai(params: Parameters) -> dict[str, Any]:
    """Variant parameters as OpenAI request fields (decimal strings become numbers)."""
    out: dict[str, Any] = {}
    if params.temperature is not None:
        out["temperature"] = float(params.temperature)
    if params.top_p is not None:
        out["top_p"] = float(params.top_p)
    if params.max_tokens is not None:
        out["max_tokens"] = params.max_tokens
    if params.presence_penalty is not None:
        out["presence_penalty"] = float(params.presence_penalty)
    if params.frequency_penalty is not None:
        out["frequency_penalty"] = float(params.frequency_penalty)
    if params.stop:
        out["stop"] = list(params.stop)
    if params.seed is not None:
        out["seed"] = params.seed
    return out


def usage(result: ChatResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }


def completion_body(
    result: ChatResult, response_id: str, created: int, *, extension: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": _message(result),
                "finish_reason": result.finish_reason,
            }
        ],
        "usage": usage(result),
    }
    if extension and result.ground_truth is not None:
        body[EXTENSION] = {"ground_truth": result.ground_truth}
    return body


def _message(result: ChatResult) -> dict[str, Any]:
    """The assistant message: its text, and its tool calls when it made any (then the
    content is null when there is no text, as OpenAI sends it)."""
    if not result.tool_calls:
        return {"role": "assistant", "content": result.text}
    return {"role": "assistant", "content": result.text or None, "tool_calls": result.tool_calls}


def chunk_body(
    response_id: str,
    created: int,
    model: str,
    delta: str | None,
    finish_reason: str | None = None,
    result: ChatResult | None = None,
    *,
    extension: bool = False,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": finish_reason}
    if delta is not None:
        choice["delta"] = {"content": delta}
    if tool_calls:
        choice["delta"] = {**choice["delta"], "tool_calls": tool_calls}
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [choice] if result is None else [],
    }
    if result is not None:
        body["usage"] = usage(result)
        if extension and result.ground_truth is not None:
            body[EXTENSION] = {"ground_truth": result.ground_truth}
    return body


def error_body(
    message: str, error_type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code or error_type,
        }
    }


def parse_completion(body: dict[str, Any], model: str) -> ChatResult:
    """A ChatResult from an OpenAI chat.completion body; ValueError if malformed."""
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
        use = body.get("usage") or {}
        truth = (body.get(EXTENSION) or {}).get("ground_truth")
        calls = choice["message"].get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise ValueError("message.tool_calls is not a list")
        return ChatResult(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=int(use.get("prompt_tokens", 0)),
            output_tokens=int(use.get("completion_tokens", 0)),
            model=body.get("model") or model,
            ground_truth=None if truth is None else float(truth),
            tool_calls=calls or None,
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"malformed chat.completion: {exc!r}") from exc


def merge_tool_deltas(calls: dict[int, dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    """Fold streamed tool-call deltas into whole calls, by their index."""
    for d in deltas:
        call = calls.setdefault(
            int(d.get("index", 0)),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if d.get("id"):
            call["id"] = d["id"]
        fn = d.get("function") or {}
        call["function"]["name"] += fn.get("name") or ""
        call["function"]["arguments"] += fn.get("arguments") or ""
