"""Temporary media: media/upload, multipart with the file in the `media` field."""

from __future__ import annotations

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json
from bot.sandbox.errors import WeComError
from bot.sandbox.models import Media
from bot.sandbox.world import ALNUM

MIN_BYTES = 5
MB = 1024 * 1024
# type -> (allowed extensions or None for any, size limit)
MEDIA_RULES: dict[str, tuple[set[str] | None, int]] = {
    "image": ({"jpg", "jpeg", "png"}, 10 * MB),
    "voice": ({"amr"}, 2 * MB),
    "video": ({"mp4"}, 10 * MB),
    "file": (None, 20 * MB),
}


def _upload(req: ApiRequest) -> Json:
    world = req.world
    media_type = req.param("type")
    if media_type not in MEDIA_RULES:
        raise WeComError(errors.INVALID_TYPE, media_type)
    upload = req.files.get("media")
    if upload is None:
        raise WeComError(errors.MISSING_MEDIA)
    extensions, limit = MEDIA_RULES[media_type]
    extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
    if extensions is not None and extension not in extensions:
        raise WeComError(errors.INVALID_MEDIA_TYPE, upload.filename)
    if not MIN_BYTES <= len(upload.data) <= limit:
        raise WeComError(errors.INVALID_MEDIA_SIZE, f"{len(upload.data)} bytes")
    media = Media(
        "3" + world.random_string(63, ALNUM),
        media_type,
        upload.filename,
        len(upload.data),
        world.now(),
    )
    world.media[media.media_id] = media
    # created_at is a string in WeCom's answer.
    return {"type": media_type, "media_id": media.media_id, "created_at": str(media.created_at)}


ENDPOINTS: dict[str, Endpoint] = {
    "media/upload": Endpoint("POST", _upload, multipart=True),
}
