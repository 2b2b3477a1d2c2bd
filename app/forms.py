"""Request bodies of the predict routes, parsed lean: multipart/form-data and JSON.

FastAPI's `File()`/`Form()` parameters cost about 110 µs of event-loop time per request here
(Starlette spools every part into a SpooledTemporaryFile, wraps it in UploadFile, then FastAPI
validates each field), and even python-multipart's streaming parser alone cost 15% of the
server's CPU under load: its per-chunk state machine and callbacks are built for bodies that do
not fit in memory. Ours do (the body limit sees to that), so the upload routes read the body
once and split it with `bytes.find` on the boundary, strictly as RFC 7578 frames it.

JSON bodies are validated straight from bytes by pydantic-core (`read_json`).

The OpenAPI descriptions are written out by `multipart_openapi` and `json_openapi`, in the form
FastAPI itself generates for File/Form and body parameters, so /docs shows the upload widget
and "Try it out" works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.errors import BadRequest, InvalidInput, UnsupportedMediaType, validation_failure

ModelT = TypeVar("ModelT", bound=BaseModel)

# A header parameter: name=token or name="quoted string" (with backslash escapes).
_PARAMETER = re.compile(rb';\s*([!#$%&\'*+.^`|~\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')
_ESCAPED = re.compile(rb"\\(.)")


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


def header_parameters(value: bytes) -> dict[bytes, bytes]:
    """`form-data; name="files"; filename="a.png"` → {b"name": b"files", b"filename": ...}."""
    parameters = {}
    for match in _PARAMETER.finditer(value):
        quoted = match.group(2)
        parameters[match.group(1).lower()] = (
            _ESCAPED.sub(rb"\1", quoted) if quoted is not None else match.group(3)
        )
    return parameters


def _part(headers: bytes, data: bytes) -> Part:
    disposition = content_type = b""
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadRequest(f"malformed multipart part header {line[:80]!r}")
        name = name.strip().lower()
        if name == b"content-disposition":
            disposition = value.strip()
        elif name == b"content-type":
            content_type = value.strip()
    if not disposition.lower().startswith(b"form-data"):
        raise BadRequest("a multipart part has no Content-Disposition: form-data header")
    parameters = header_parameters(disposition)
    if b"name" not in parameters:
        raise BadRequest("a multipart part has no Content-Disposition name")
    filename = parameters.get(b"filename")
    return Part(
        name=parameters[b"name"].decode("utf-8", errors="replace"),
        filename=None if filename is None else filename.decode("utf-8", errors="replace"),
        content_type=content_type.decode("latin-1").split(";", 1)[0].strip().lower(),
        data=data,
    )


def parse_multipart(body: bytes, boundary: bytes, max_parts: int) -> list[Part]:
    """The parts of a multipart/form-data body (RFC 7578 / RFC 2046 framing).

    Each part starts after `--boundary` and optional whitespace and CRLF; its headers end at an
    empty line; its data ends right before CRLF `--boundary`; `--boundary--` closes the body.
    A preamble before the first boundary and an epilogue after the last are ignored.
    """
    delimiter = b"--" + boundary
    next_part = b"\r\n" + delimiter
    position = body.find(delimiter)
    if position < 0:
        raise BadRequest("malformed multipart body: the boundary never occurs")
    if position > 0 and not body.startswith(b"\r\n", position - 2):
        raise BadRequest("malformed multipart body: the first boundary does not start a line")
    position += len(delimiter)
    parts: list[Part] = []
    while not body.startswith(b"--", position):
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise BadRequest("malformed multipart body: bad boundary line")
        if len(parts) == max_parts:
            raise TooManyParts(f"more than {max_parts} parts in the form")
        headers_start = line_end + 2
        if body.startswith(b"\r\n", headers_start):  # a part without headers
            headers_end = headers_start
        else:
            headers_end = body.find(b"\r\n\r\n", headers_start)
            if headers_end < 0:
                raise BadRequest("malformed multipart body: part headers never end")
        data_start = headers_end + 4 if headers_end > headers_start else headers_start + 2
        data_end = body.find(next_part, data_start)
        if data_end < 0:
            raise BadRequest("malformed multipart body: a part is not closed by the boundary")
        parts.append(_part(body[headers_start:headers_end], body[data_start:data_end]))
        position = data_end + len(next_part)
    return parts


async def read_form(request: Request, max_parts: int) -> Form:
    """415 unless multipart/form-data; 400 if malformed; at most `max_parts` parts."""
    require_content_type(request, "multipart/form-data")
    boundary = header_parameters(request.headers.get("content-type", "").encode("latin-1")).get(
        b"boundary"
    )
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
    files_description: str, model_default: str, model_description: str, top_k_description: str
) -> dict[str, Any]:
    """The requestBody FastAPI would generate for `files: list[UploadFile] = File()`,
    `model: str = Form()`, `top_k: int = Form()`, so Swagger UI offers file pickers."""
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
                            "top_k": {
                                "type": "integer",
                                "minimum": 1,
                                "default": 3,
                                "description": top_k_description,
                            },
                        },
                    },
                }
            },
        }
    }
