"""multipart/form-data for the upload routes, parsed lean.

FastAPI's `File()`/`Form()` parameters cost about 110 µs of event-loop time per request here
(Starlette spools every part into a SpooledTemporaryFile, wraps it in UploadFile, then FastAPI
validates each field), which is most of the per-request budget of a small model. The upload
routes therefore read the body once and run python-multipart's parser (the one Starlette
uses) with callbacks that only collect bytes. Their OpenAPI description is written out by
`multipart_openapi`, in the form FastAPI itself generates for File/Form parameters, so /docs
shows the upload widget and "Try it out" works.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import BadRequest, InvalidInput
from app.predict import require_content_type


@dataclass(slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str
    data: bytearray = field(default_factory=bytearray)


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


class _Collector:
    """python-multipart callbacks that gather parts into memory (the body is already there)."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts: list[Part] = []
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._content_type = b""
        self._current: Part | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
        }

    def on_part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise InvalidInput(f"more than {self.max_parts} parts in the form (SMS_MAX_ITEMS)")
        self._disposition = self._content_type = b""
        self._current = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = bytes(self._header_name).lower()
        if name == b"content-disposition":
            self._disposition = bytes(self._header_value)
        elif name == b"content-type":
            self._content_type = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise BadRequest("a multipart part has no Content-Disposition name")
        filename = options.get(b"filename")
        self._current = Part(
            name=options[b"name"].decode("utf-8", errors="replace"),
            filename=None if filename is None else filename.decode("utf-8", errors="replace"),
            content_type=self._content_type.decode("latin-1").split(";", 1)[0].strip().lower(),
        )
        self.parts.append(self._current)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self._current is not None
        self._current.data += data[start:end]


async def read_form(request: Request, max_parts: int) -> Form:
    """415 unless multipart/form-data; 400 if malformed; at most `max_parts` parts."""
    require_content_type(request, "multipart/form-data")
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary parameter")
    body = await request.body()
    collector = _Collector(max_parts)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None
    return Form(collector.parts)


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
