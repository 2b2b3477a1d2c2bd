"""Request bodies of the predict routes, parsed lean: multipart/form-data and JSON.

FastAPI's `File()`/`Form()` parameters cost about 110 µs of event-loop time per request here
(Starlette spools every part into a SpooledTemporaryFile, wraps it in UploadFile, then FastAPI
validates each field). The upload routes instead read the body once (it is in memory anyway,
bounded by the body limit) and hand it in one `write` to python-multipart's `MultipartParser`
(the parser Starlette itself uses), with callbacks that only collect each part's
Content-Disposition, Content-Type and data. Since 0.0.33 the parser jumps through headers and
data with `bytes.find`: an 850-byte form takes ~28 µs here, where 0.0.30 took ~160 µs (hence the
version floor in pyproject.toml).

JSON bodies are validated straight from bytes by pydantic-core (`read_json`).

The OpenAPI descriptions are written out by `multipart_openapi` and `json_openapi`, in the form
FastAPI generates for File/Form and body parameters (plus `format: binary` on the files, which
Swagger UI needs for its file picker), so /docs shows the upload widget and "Try it out" works:
scripts/swagger-check.py checks that in a browser.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.errors import BadRequest, InvalidInput, UnsupportedMediaType
from app.http.errors import validation_failure
from app.pipelines.base import Upload

ModelT = TypeVar("ModelT", bound=BaseModel)

# python-multipart logs a warning for every malformed body it sees; those are the client's
# errors, answered with a 400 that names them, not the server's.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)

# Content-Disposition values repeat (`form-data; name="model"`, and often the file names): their
# parsed form is cached (~3 µs each, a hit ~0.1 µs). The dicts are only ever read.
_disposition = functools.lru_cache(maxsize=1024)(parse_options_header)


class TooManyParts(InvalidInput):
    """More parts than the caller allows (it knows what the limit means to the client)."""


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytes


@dataclass(slots=True)
class Form:
    parts: list[Part]

    def files(self, name: str) -> list[Part]:
        return [part for part in self.parts if part.name == name and part.filename is not None]

    def text(self, name: str, default: str) -> str:
        for part in self.parts:
            if part.name == name and part.filename is None:
                return part.data.decode("utf-8", errors="replace")
        return default

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("true", "1", "yes", "on"):
            return True
        if raw in ("false", "0", "no", "off"):
            return False
        raise InvalidInput(f"form field `{name}` must be true or false, got {raw!r}")

    def positive_int(self, name: str, default: int) -> int:
        raw = self.text(name, str(default)).strip()
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise InvalidInput(f"form field `{name}` must be a positive integer, got {raw!r}")
        return value


def require_content_type(request: Request, *accepted: str) -> None:
    """415 unless the request body's media type is one of `accepted`."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in accepted:
        raise UnsupportedMediaType(
            f"content type {media_type or '(none)'!r} is not accepted here; send "
            + " or ".join(accepted)
        )


def _from_first_boundary(body: bytes, delimiter: bytes) -> bytes:
    """The body as python-multipart wants it: opening with the first `--boundary` CRLF line.

    RFC 2046 also allows a preamble before that line and whitespace at its end (real clients
    send neither); they are dropped here, which copies the body, so only when they are there.
    """
    length = len(delimiter)
    if body.startswith(delimiter) and body.startswith((b"\r\n", b"--"), length):
        return body
    start = body.find(delimiter)
    if start < 0:
        raise BadRequest("malformed multipart body: the boundary never occurs")
    if start > 0 and not body.startswith(b"\r\n", start - 2):
        raise BadRequest("malformed multipart body: the first boundary does not start a line")
    line_end = body.find(b"\r\n", start + length)
    if line_end > start + length and not body[start + length : line_end].strip(b" \t"):
        return delimiter + body[line_end:]
    return body[start:]


def parse_multipart(body: bytes, boundary: bytes, max_parts: int) -> list[Part]:
    """The parts of a multipart/form-data body, by python-multipart; 400 if it is malformed
    (including a body that ends before the closing boundary), `TooManyParts` past `max_parts`.

    The body goes to the parser in one `write`, so each header name and value reaches its
    callback in one piece (only a body cut off inside a header would send a piece, and that
    body is refused below): the callbacks keep the two headers we use and need no
    `on_header_end`. A part's data comes in one piece too, but is appended to be safe.
    """
    parts: list[Part] = []
    header = disposition = content_type = b""

    def on_part_begin() -> None:
        nonlocal disposition, content_type
        if len(parts) == max_parts:
            raise TooManyParts(f"more than {max_parts} parts in the form")
        disposition = content_type = b""

    def on_header_field(data: bytes, start: int, end: int) -> None:
        nonlocal header
        header = data[start:end].lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        nonlocal disposition, content_type
        if header == b"content-disposition":
            disposition = data[start:end]
        elif header == b"content-type":
            content_type = data[start:end]

    def on_headers_finished() -> None:
        kind, options = _disposition(disposition)
        if kind != b"form-data":
            raise BadRequest("a multipart part has no Content-Disposition: form-data header")
        name = options.get(b"name")
        if not name:
            raise BadRequest("a multipart part has no Content-Disposition name")
        filename = options.get(b"filename")
        parts.append(
            Part(
                name=name.decode("utf-8", errors="replace"),
                filename=None if filename is None else filename.decode("utf-8", errors="replace"),
                content_type=content_type.decode("latin-1").split(";", 1)[0].strip().lower(),
                data=b"",
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data += data[start:end]

    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
            },
        )
        parser.write(_from_first_boundary(body, b"--" + boundary))
    except FormParserError as exc:  # MultipartParseError, or a boundary over 256 bytes
        raise BadRequest(f"malformed multipart body: {exc}") from None
    if parser.state != MultipartState.END:
        raise BadRequest("malformed multipart body: it ends before the closing boundary")
    return parts


async def read_form(request: Request, max_parts: int) -> Form:
    """415 unless multipart/form-data; 400 if malformed; at most `max_parts` parts."""
    require_content_type(request, "multipart/form-data")
    _, parameters = parse_options_header(request.headers.get("content-type"))
    boundary = parameters.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary parameter")
    body = await request.body()
    return Form(parse_multipart(body, boundary, max_parts))


async def read_json(request: Request, model: type[ModelT]) -> ModelT:
    """415 unless application/json; 422 naming each invalid field (or the JSON error)."""
    require_content_type(request, "application/json")
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_failure(exc.errors(include_url=False)) from None


def json_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The requestBody FastAPI would generate for a `body: model` parameter (schema inline)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def multipart_openapi(
    files_description: str,
    model_default: str,
    model_description: str,
    top_k_default: int,
    top_k_description: str,
) -> dict[str, Any]:
    """The requestBody FastAPI would generate for `files: list[UploadFile] = File()`,
    `model: str = Form()`, `top_k: int = Form()`, so Swagger UI offers file pickers.

    FastAPI (0.165) marks a file with `contentMediaType` only, for which Swagger UI (5.35)
    draws a text box filled with random characters; `format: binary` gets the file picker.
    """
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": {
                                    "type": "string",
                                    "format": "binary",
                                    "contentMediaType": "application/octet-stream",
                                },
                                "description": files_description,
                            },
                            "model": {
                                "type": "string",
                                "default": model_default,
                                "description": model_description,
                            },
                            "version": {
                                "type": "string",
                                "description": "Model version (a folder number); default: "
                                "the latest served.",
                            },
                            "abstain": {
                                "type": "boolean",
                                "default": True,
                                "description": "false: never abstain (the bare label).",
                            },
                            "top_k": {
                                "type": "integer",
                                "minimum": 1,
                                "default": top_k_default,
                                "description": top_k_description,
                            },
                        },
                    },
                }
            },
        }
    }


# -- uploads -------------------------------------------------------------------------------

GENERIC_BINARY = "application/octet-stream"
FILES_FIELD = "files"
_OTHER_FIELDS = 8  # room for `model`, `top_k` and a few fields we ignore


@dataclass(slots=True)
class UploadForm:
    """A parsed upload form: its fields and the uploaded files, checked."""

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
