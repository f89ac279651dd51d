"""`POST /media`: upload an image, a document or a video for template headers (docs/api.md#media).

The file goes to Graph (`POST /{phone_number_id}/media`, the employer's own number or the shared one) and the
answer is Graph's media id, which a template announcement's header names (`{"media_id": …}`). Its kind is read
from the content, never from the name or the client's claim, and each kind has WhatsApp's size limit.
"""

from __future__ import annotations

import codecs
from typing import Annotated

import filetype
import httpx
import msgspec
from litestar import post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from bot import contracts
from bot.auth import Principal
from bot.errors import (
    BadGatewayError,
    PayloadTooLargeError,
    ProblemOperation,
    UnsupportedMediaTypeError,
    ValidationFailedError,
    problems,
)
from bot.graph.account import account
from bot.state import AppState

MB = 1024 * 1024
# WhatsApp's limits per kind (docs/whatsapp.md#media): what Graph would refuse is refused here, with the rule.
LIMITS = {"image": 5 * MB, "document": 100 * MB, "video": 16 * MB}
# The types WhatsApp takes for each header kind.
ACCEPTED = {
    "image/jpeg": "image",
    "image/png": "image",
    "video/mp4": "video",
    "video/3gpp": "video",
    "application/pdf": "document",
    "application/msword": "document",
    "application/vnd.ms-excel": "document",
    "application/vnd.ms-powerpoint": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "document",
    "text/plain": "document",
}
# The multipart body may carry a 100 MB document and its envelope.
MAX_UPLOAD_BYTES = LIMITS["document"] + MB
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def sniff(head: bytes) -> str | None:
    """The MIME type the content shows (its first bytes), or None for a kind WhatsApp does not take."""
    kind = filetype.guess(head)
    if kind is not None:
        mime = str(kind.mime)
        # filetype names 3GP video by its container brand.
        return "video/3gpp" if mime in ("video/3gpp", "video/3gpp2") else mime
    if head.startswith(_OLE):
        return "application/msword"  # an old Office file; Graph tells Word, Excel and PowerPoint apart itself
    try:
        # Not final: ``head`` is the first bytes of the file, and may end inside a multi-byte character (a
        # plain `decode` refused any UTF-8 text longer than the head that was not ASCII at its cut).
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return "text/plain" if b"\x00" not in head else None


class MediaUpload(msgspec.Struct):
    """The multipart body: the file in the part named `file`.

    Bound by name: a bare `UploadFile` parameter makes Litestar take the first file part whatever its name, and
    answer 500 when `file` is a plain field or sent twice; here those are a 422 naming `file`."""

    file: UploadFile


class _GraphMedia(msgspec.Struct):
    id: str | None = None


@post(
    "/media",
    status_code=200,
    operation_id="UploadMedia",
    tags=["Templates"],
    summary="Upload an image, a document or a video for a template header",
    description="Multipart, one part named `file`. The kind is read from the content: JPEG/PNG images up to "
    "5 MB, MP4/3GPP videos up to 16 MB, PDF/Office/plain-text documents up to 100 MB. Answers the media id a "
    'template announcement\'s header takes (`{"media_id": …}`). 413 over the limit, 415 for other kinds, 422 '
    "without a file, 502 when WhatsApp refuses it.",
    request_max_body_size=MAX_UPLOAD_BYTES,
    responses=problems(
        400,
        401,
        (413, "The file is over its kind's limit (image 5 MB, video 16 MB, document 100 MB)"),
        (415, "The content is not a kind WhatsApp takes"),
        (422, "No file (the multipart part named `file`), or an empty one"),
        (502, "WhatsApp refused the upload or could not be reached"),
    ),
    operation_class=ProblemOperation,
)
async def upload_media(
    data: Annotated[MediaUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    state: AppState,
    principal: NamedDependency[Principal],
    db_session: NamedDependency[AsyncSession],
) -> contracts.Media:
    upload = data.file
    if not isinstance(upload, UploadFile):
        raise ValidationFailedError.one("file", "one file is required, as the multipart part named `file`")
    content = await upload.read()
    if not content:
        raise ValidationFailedError.one("file", "is empty")
    mime = sniff(content[:8192])
    kind = ACCEPTED.get(mime or "")
    if kind is None:
        shown = mime or "unknown"
        raise UnsupportedMediaTypeError(
            f"file: its content is {shown}; WhatsApp takes JPEG/PNG images, MP4/3GPP videos and PDF, Office or "
            "plain-text documents"
        )
    if len(content) > LIMITS[kind]:
        raise PayloadTooLargeError(
            f"file: a {kind} may be at most {LIMITS[kind] // MB} MB; this one is {len(content) / MB:.1f} MB"
        )
    assert mime is not None
    acct = await account(db_session, state.settings, principal.employer_id, templates=False)
    url = f"{state.settings.whatsapp_api_url.rstrip('/')}/{acct.phone_number_id}/media"
    try:
        answer = await state.graph_http.post(
            url,
            headers={"Authorization": f"Bearer {acct.token}"},
            data={"messaging_product": "whatsapp", "type": mime},
            files={"file": (upload.filename or "upload", content, mime)},
        )
    except httpx.HTTPError as exc:
        raise BadGatewayError(f"WhatsApp could not be reached ({type(exc).__name__}); try again") from None
    try:
        uploaded = msgspec.json.decode(answer.content, type=_GraphMedia)
    except (msgspec.DecodeError, msgspec.ValidationError):
        uploaded = _GraphMedia()
    if answer.status_code != 200 or not uploaded.id:
        raise BadGatewayError(f"WhatsApp refused the upload (HTTP {answer.status_code})")
    return contracts.Media(media_id=uploaded.id, mime_type=mime, bytes=len(content))
