"""Temporary media: media/upload, multipart with the file in the `media` field."""

from __future__ import annotations

from bot.sandbox import errors
from bot.sandbox.endpoints.base import ApiRequest, Endpoint, Json, Upload
from bot.sandbox.errors import WeComError
from bot.sandbox.models import Media
from bot.sandbox.world import ALNUM, SandboxWorld

MIN_BYTES = 5
MB = 1024 * 1024
# type -> (allowed extensions or None for any, size limit)
MEDIA_RULES: dict[str, tuple[set[str] | None, int]] = {
    "image": ({"jpg", "jpeg", "png"}, 10 * MB),
    "voice": ({"amr"}, 2 * MB),
    "video": ({"mp4"}, 10 * MB),
    "file": (None, 20 * MB),
}


def known_type(media_type: str) -> str:
    """`media_type` if WeCom takes uploads of that type (40005 otherwise)."""
    if media_type not in MEDIA_RULES:
        raise WeComError(errors.INVALID_TYPE, media_type)
    return media_type


def checked_upload(req: ApiRequest, media_type: str) -> Upload:
    """The file in the `media` field, held to the extensions and size `media_type` allows."""
    upload = req.files.get("media")
    if upload is None:
        raise WeComError(errors.MISSING_MEDIA)
    extensions, limit = MEDIA_RULES[media_type]
    extension = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
    if extensions is not None and extension not in extensions:
        raise WeComError(errors.INVALID_MEDIA_TYPE, upload.filename)
    if not MIN_BYTES <= len(upload.data) <= limit:
        raise WeComError(errors.INVALID_MEDIA_SIZE, f"{len(upload.data)} bytes")
    return upload


def new_media_id(world: SandboxWorld) -> str:
    return "3" + world.random_string(63, ALNUM)


def uploaded(media: Media) -> Json:
    # created_at is a string in WeCom's answer.
    return {"type": media.type, "media_id": media.media_id, "created_at": str(media.created_at)}


def _upload(req: ApiRequest) -> Json:
    world = req.world
    media_type = known_type(req.param("type"))
    upload = checked_upload(req, media_type)
    media = Media(new_media_id(world), media_type, upload.filename, len(upload.data), world.now())
    world.media[media.media_id] = media
    return uploaded(media)


ENDPOINTS: dict[str, Endpoint] = {
    "media/upload": Endpoint("POST", _upload, multipart=True),
}
