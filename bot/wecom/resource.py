"""Shared plumbing for the resource groups: the client handle and request-model building."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from bot.wecom.errors import InvalidRequest

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

M = TypeVar("M", bound=BaseModel)


class Resource:
    """One group of WeCom endpoints, calling through the client that owns it."""

    def __init__(self, client: WeComClient) -> None:
        self._client = client


def describe(exc: ValidationError) -> str:
    """A short, input-free summary of a validation failure (inputs may hold PII)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def build(model: type[M], path: str, **fields: Any) -> M:
    """Validate a request body, leaving out unset (None) fields; InvalidRequest if it
    breaks a documented limit, before anything is sent."""
    try:
        return model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InvalidRequest(path, describe(exc)) from None


def require(path: str, **values: str) -> None:
    """InvalidRequest if any of the named string arguments is empty."""
    for name, value in values.items():
        if not value:
            raise InvalidRequest(path, f"{name}: must not be empty")


def as_list(values: Iterable[str] | None) -> list[str] | None:
    """A list copy (None stays None): models must not hold a caller's mutable sequence."""
    return None if values is None else list(values)


def recipients(value: str | Sequence[str] | None) -> list[str] | None:
    """Recipients given as one id, a '|'-joined string, or a sequence, as a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [v for v in value.split("|") if v]
    return list(value)
