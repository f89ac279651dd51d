"""Uploaded media: `POST /{phone_number_id}/media` keeps the file in memory under a new media id, which a send's
template header may name (`{"id": …}`) and `GET /{media_id}` describes (docs/whatsapp.md#media).

Kept until the simulator stops (Meta keeps uploads 30 days); `/_simulator/reset` keeps them too.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from bot.simulator.validation import GraphError

MB = 1024 * 1024
# The types Meta takes (the list its error names, in its order) and the kind each one is.
KINDS = {
    "audio/aac": "audio", "audio/mp4": "audio", "audio/mpeg": "audio", "audio/amr": "audio", "audio/ogg": "audio",
    "audio/opus": "audio",
    "application/vnd.ms-powerpoint": "document", "application/msword": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "document",
    "application/pdf": "document", "text/plain": "document", "application/vnd.ms-excel": "document",
    "image/jpeg": "image", "image/png": "image", "image/webp": "sticker",
    "video/mp4": "video", "video/3gpp": "video",
}  # fmt: skip
# Meta's size limit of each kind (an animated sticker's 500 KB; a static one's is 100 KB).
LIMITS = {"audio": 16 * MB, "document": 100 * MB, "image": 5 * MB, "sticker": 500 * 1024, "video": 16 * MB}
# The largest upload body: a 100 MB document and its multipart envelope.
MAX_UPLOAD_BYTES = LIMITS["document"] + MB
UNSUPPORTED = "Param file must be a file with one of the following types: " + ", ".join(KINDS) + "."


@dataclass(frozen=True)
class Media:
    id: str
    mime_type: str
    data: bytes
    sha256: str
    phone_number_id: str  # the number that uploaded it

    @property
    def kind(self) -> str:
        return KINDS[self.mime_type]

    def describe(self, url: str) -> dict[str, str]:
        """`GET /{media_id}` as Graph answers it (`file_size` is a string there)."""
        return {"messaging_product": "whatsapp", "url": url, "mime_type": self.mime_type, "sha256": self.sha256,
                "file_size": str(len(self.data)), "id": self.id}  # fmt: skip


def _mime(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


class MediaStore:
    """Every upload of this app, by media id."""

    def __init__(self) -> None:
        self.items: dict[str, Media] = {}

    def add(self, *, mime_type: str, data: bytes, phone_number_id: str) -> Media:
        """Keep one upload; Graph's 100 for a type it does not take or a file over its kind's limit."""
        mime = _mime(mime_type)
        kind = KINDS.get(mime)
        if kind is None:
            raise GraphError(400, 100, UNSUPPORTED, f"Received file of type '{mime[:100]}'")
        if len(data) > LIMITS[kind]:
            limit = LIMITS[kind]
            raise GraphError(400, 100, "Invalid parameter", f"File Too Large: the file is {len(data)} bytes; "
                             f"{mime} media may be at most {limit} bytes ({limit // 1024} KB)")  # fmt: skip
        media_id = str(secrets.randbelow(9 * 10**15) + 10**15)  # 16 digits, like Meta's
        media = Media(media_id, mime, data, hashlib.sha256(data).hexdigest(), phone_number_id)
        self.items[media_id] = media
        return media

    def get(self, media_id: str) -> Media | None:
        return self.items.get(media_id)
