"""File uploads, shared by the modalities that take files (images, audio): the form is parsed
by app.forms; this checks the files' count, declared types and emptiness."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from fastapi import Request

from app.errors import InvalidInput, UnsupportedMediaType, error_responses
from app.forms import Form, TooManyParts, read_form
from app.modalities.base import Upload

UPLOAD_ERRORS = error_responses(400, 404, 413, 415, 422, 500, 503, 504)
GENERIC_BINARY = "application/octet-stream"
FILES_FIELD = "files"
_OTHER_FIELDS = 8  # room for `model`, `top_k` and a few fields we ignore


@dataclass(slots=True)
class UploadForm:
    form: Form
    uploads: list[Upload]


async def read_uploads(request: Request, accepted_types: Collection[str], kind: str) -> UploadForm:
    """Parse the form; check the count of files, each file's declared type and emptiness.

    A file declared as `application/octet-stream` (or with no type) is accepted here: its
    bytes decide, in the worker.
    """
    max_items: int = request.app.state.settings.max_items
    try:
        form = await read_form(request, max_parts=max_items + _OTHER_FIELDS)
    except TooManyParts:
        raise InvalidInput(
            f"too many files in one request; the limit is {max_items} (SMS_MAX_ITEMS)"
        ) from None
    parts = form.files(FILES_FIELD)
    if not parts:
        raise InvalidInput(
            f"no file in form field `{FILES_FIELD}`; upload one or more {kind} files"
        )
    if len(parts) > max_items:
        raise InvalidInput(
            f"{len(parts)} files in one request; the limit is {max_items} (SMS_MAX_ITEMS)"
        )
    uploads = []
    for index, part in enumerate(parts):
        name = part.filename or f"{FILES_FIELD}[{index}]"
        declared = part.content_type
        if declared and declared != GENERIC_BINARY and declared not in accepted_types:
            raise UnsupportedMediaType(
                f"{name}: content type {declared!r} is not a supported {kind} type "
                f"({', '.join(sorted(accepted_types))})"
            )
        if not part.data:
            raise InvalidInput(f"{name}: empty file")
        uploads.append(Upload(name, part.data))
    return UploadForm(form, uploads)
