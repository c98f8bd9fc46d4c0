"""Temporary media: `media/upload` (media ids for attachments, valid three days)."""

from __future__ import annotations

from bot.wecom.errors import InvalidRequest
from bot.wecom.models import MEDIA_MAX_BYTES, MEDIA_MIN_BYTES, MediaType, MediaUploadResult
from bot.wecom.resource import Resource


class MediaAPI(Resource):
    """`client.media`: uploads for mass-send, welcome and app-message attachments."""

    async def upload(
        self,
        type: MediaType,
        content: bytes,
        *,
        filename: str,
        content_type: str = "application/octet-stream",
    ) -> MediaUploadResult:
        """Upload a temporary image, voice, video or file; returns its media_id (90253)."""
        path = "media/upload"
        limit = MEDIA_MAX_BYTES.get(type)
        if limit is None:
            raise InvalidRequest(path, f"type: must be one of {sorted(MEDIA_MAX_BYTES)}")
        if not MEDIA_MIN_BYTES <= len(content) <= limit:
            raise InvalidRequest(
                path, f"{type} is {len(content)} bytes; WeCom takes {MEDIA_MIN_BYTES}-{limit}"
            )
        if not filename:
            raise InvalidRequest(path, "filename: must not be empty")
        return await self._client.call(
            "POST",
            path,
            MediaUploadResult,
            params={"type": type},
            files={"media": (filename, content, content_type)},
            idempotent=False,
        )
