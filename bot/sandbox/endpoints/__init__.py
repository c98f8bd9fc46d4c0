"""WeCom API endpoints the sandbox serves, one module per resource, keyed by path."""

from __future__ import annotations

from bot.sandbox.endpoints import contacts, groups, masssend, media, messages, moments, tags
from bot.sandbox.endpoints.base import Endpoint, token_endpoint

ENDPOINTS: dict[str, Endpoint] = {
    "gettoken": token_endpoint(),
    **contacts.ENDPOINTS,
    **tags.ENDPOINTS,
    **groups.ENDPOINTS,
    **masssend.ENDPOINTS,
    **messages.ENDPOINTS,
    **media.ENDPOINTS,
    **moments.ENDPOINTS,
}

__all__ = ["ENDPOINTS", "Endpoint"]
