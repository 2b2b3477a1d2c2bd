"""The multipart parsing of the upload routes (python-multipart, driven by app.forms), against
what real clients send and against spliced garbage."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from python_multipart.multipart import parse_options_header

from app.errors import BadRequest, InvalidInput
from app.http.forms import TooManyParts, parse_multipart

# Names as clients write them unescaped: httpx (like browsers) percent-encodes quotes, backslashes
# and control characters, and servers hand those on as they are.
names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"], exclude_characters='"\\%'),
    min_size=1,
    max_size=12,
)
payloads = st.binary(max_size=300) | st.sampled_from(
    [b"", b"\r\n", b"--", b"\r\n--\r\n", b"\r\n\r\n"]
)


def encode(fields: dict[str, str], files: list[tuple[str, bytes, str]]) -> tuple[bytes, bytes]:
    """Body and boundary exactly as httpx (a real client) writes them."""
    request = httpx.Client().build_request(
        "POST",
        "http://test/",
        data=fields,
        files=[("files", (name, data, kind)) for name, data, kind in files],
    )
    boundary = parse_options_header(request.headers["content-type"])[1][b"boundary"]
    return request.read(), boundary


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(names, st.text(max_size=40), max_size=3),
    files=st.lists(
        st.tuples(names, payloads, st.sampled_from(["image/png", "audio/wav"])),
        min_size=1,
        max_size=4,
    ),
)
def test_parses_what_a_real_client_sends(fields, files) -> None:
    body, boundary = encode(fields, files)
    parts = parse_multipart(body, boundary, max_parts=20)
    got_fields = {p.name: p.data.decode() for p in parts if p.filename is None}
    got_files = [(p.filename, p.data, p.content_type) for p in parts if p.filename is not None]
    assert got_fields == fields
    assert got_files == [(name, data, kind) for name, data, kind in files]


# Bodies spliced from the pieces a multipart body is made of, in any order.
PIECES = [b"--x", b"--", b"\r\n", b"\r\n\r\n", b" ", b";", b"data", b"\x00\xff"]
PIECES += [b"Content-Disposition: form-data", b'; name="a"', b'; filename="f.png"', b"name=b"]
PIECES += [b"Content-Type: image/png", b":"]


@settings(max_examples=500, deadline=None)
@given(body=st.lists(st.sampled_from(PIECES), max_size=30).map(b"".join) | st.binary(max_size=200))
def test_any_body_parses_or_is_refused_with_a_4xx(body: bytes) -> None:
    with contextlib.suppress(BadRequest, InvalidInput):
        parts = parse_multipart(body, b"x", max_parts=5)
        assert len(parts) <= 5
        assert all(part.name for part in parts)


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary here",
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',  # never closed
        b'--x\r\nContent-Disposition: form-data; name="a"',  # headers never end
        b"--x\r\nno-colon-header\r\n\r\nv\r\n--x--",
        b"--x\r\nContent-Type: text/plain\r\n\r\nv\r\n--x--",  # no Content-Disposition
        b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--",  # no name
        b'junk--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--x--',
        b'--x\r\nContent-Disposition: form-data; name=""\r\n\r\nv\r\n--x--',  # empty name
        b'--x\r\nContent-Disposition: form-data; name="a"\r\nContent-Type: ima',  # cut in a header
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--x',  # never closed
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_multipart(body, b"x", max_parts=5)


def test_overlong_boundary_is_a_bad_request() -> None:
    boundary = b"b" * 300  # RFC 2046 allows 70; python-multipart refuses more than 256
    body = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--'
    with pytest.raises(BadRequest, match="Boundary length 300"):
        parse_multipart(body + boundary + b"--", boundary, max_parts=5)


def test_preamble_epilogue_padding_and_unquoted_names() -> None:
    body = (
        b"preamble\r\n--x  \r\nContent-Disposition: form-data; name=model\r\n\r\nmnist"
        b'\r\n--x\r\ncontent-disposition: form-data; name="files"; filename="a.png"\r\n'
        b"Content-Type: IMAGE/PNG; charset=binary\r\n\r\n\x89PNG\r\n--x--\r\nepilogue"
    )
    model, image = parse_multipart(body, b"x", max_parts=5)
    assert (model.name, model.filename, model.data) == ("model", None, b"mnist")
    assert (image.name, image.filename, image.content_type) == ("files", "a.png", "image/png")
    assert image.data == b"\x89PNG"


def test_part_count_is_bounded() -> None:
    body, boundary = encode({}, [(f"{i}.png", b"x", "image/png") for i in range(4)])
    with pytest.raises(TooManyParts, match="more than 3 parts"):
        parse_multipart(body, boundary, max_parts=3)
