"""Temporary media: `media/upload` (media ids for attachments, valid three days) and
`media/upload_attachment` (images and videos for customer moments)."""

from __future__ import annotations

from bot.wecom.errors import InvalidRequest
from bot.wecom.models import MEDIA_MAX_BYTES, MEDIA_MIN_BYTES, MediaType, MediaUploadResult
from bot.wecom.moment_models import ATTACHMENT_MOMENTS, AttachmentMediaType, AttachmentType
from bot.wecom.resource import Resource


class MediaAPI(Resource):
    """`client.media`: uploads for mass-send, welcome, app-message and moments attachments."""

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

    async def upload_attachment(
        self,
        media_type: AttachmentMediaType,
        content: bytes,
        *,
        filename: str,
        content_type: str = "application/octet-stream",
        attachment_type: AttachmentType = ATTACHMENT_MOMENTS,
    ) -> MediaUploadResult:
        """Upload an attachment resource (95098); `attachment_type` 1 is for customer
        moments (images and videos only), 2 for product albums (images only)."""
        path = "media/upload_attachment"
        allowed = ("image", "video") if attachment_type == ATTACHMENT_MOMENTS else ("image",)
        if media_type not in allowed:
            raise InvalidRequest(
                path, f"media_type: attachment_type {attachment_type} takes {', '.join(allowed)}"
            )
        limit = MEDIA_MAX_BYTES[media_type]
        if not MEDIA_MIN_BYTES <= len(content) <= limit:
            raise InvalidRequest(
                path,
                f"{media_type} is {len(content)} bytes; WeCom takes {MEDIA_MIN_BYTES}-{limit}",
            )
        if not filename:
            raise InvalidRequest(path, "filename: must not be empty")
        return await self._client.call(
            "POST",
            path,
            MediaUploadResult,
            params={"media_type": media_type, "attachment_type": attachment_type},
            files={"media": (filename, content, content_type)},
            idempotent=False,
        )
