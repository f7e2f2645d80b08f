"""Turn a raw spec into a typed model, or an error that names the bad field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from .common import ApiModel, FieldProblem

M = TypeVar("M", bound=ApiModel)


class InvalidSpec(ValueError):
    """A spec the operator refuses; ``field`` is the path a person should fix."""

    def __init__(self, field: str, message: str) -> None:
        # ``message`` already names the field(s) in "path: problem" form.
        super().__init__(message)
        self.field = field
        self.message = message


def _path(loc: tuple[int | str, ...], root: str) -> str:
    out = root
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _error_path(error: Any, root: str) -> str:
    path = _path(tuple(error["loc"]), root)
    problem = (error.get("ctx") or {}).get("error")
    if isinstance(problem, FieldProblem) and problem.path:
        sep = "" if problem.path.startswith("[") else "."
        path = f"{path}{sep}{problem.path}"
    return path


def parse_spec(model: type[M], spec: Any, root: str = "spec") -> M:
    """Validate ``spec`` against ``model``; raise :class:`InvalidSpec` naming the field.

    All problems are listed (up to five) so one edit can fix them together.
    """
    if not isinstance(spec, dict):
        raise InvalidSpec(root, f"{root}: must be an object")
    try:
        return model.model_validate(spec)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = _error_path(errors[0], root)
        parts = [
            f"{_error_path(e, root)}: {e['msg'].removeprefix('Value error, ')}" for e in errors[:5]
        ]
        if len(errors) > 5:
            parts.append(f"and {len(errors) - 5} more")
        raise InvalidSpec(first, "; ".join(parts)) from None
