"""Bad input gets a clear 4xx in the one error shape, never a 5xx and never a hang."""

from __future__ import annotations

import struct
import zlib

import httpx
import numpy as np
import pytest
from model_factory import digit_strokes, image_bytes, standard_repository
from serving_harness import running_server, settings_for


def assert_error(response: httpx.Response, status: int, code: str, *phrases: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    for phrase in phrases:
        assert phrase in error["message"], error["message"]
    return error


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width×height pixels (and has no pixel data): a decompression bomb's
    header, enough for the server to refuse it before decoding."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small_limits_url(tmp_path_factory: pytest.TempPathFactory):
    """A server with small limits, so the limit tests send small requests."""
    models_dir = tmp_path_factory.mktemp("limits")
    standard_repository(models_dir)
    settings = settings_for(
        models_dir,
        max_body_bytes=50_000,
        max_image_pixels=200 * 200,
        max_items=3,
        max_text_chars=100,
    )
    with running_server(settings) as url:
        yield url


@pytest.fixture
def limited(small_limits_url: str):
    with httpx.Client(base_url=small_limits_url, timeout=30) as http:
        yield http


def test_body_over_the_limit_by_content_length(limited: httpx.Client) -> None:
    big = b"\0" * 60_000
    response = limited.post("/predict/image", files={"files": ("big.png", big, "image/png")})
    assert_error(response, 413, "payload_too_large", "50000 bytes")


def test_body_over_the_limit_when_streamed_without_length(limited: httpx.Client) -> None:
    def chunks():
        for _ in range(30):
            yield b'{"text": "' + b"a" * 5_000

    response = limited.post(
        "/predict/sentiment", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large", "exceeds the limit of 50000 bytes")


def test_oversized_bodies_are_counted_under_their_route(limited: httpx.Client) -> None:
    series = 'sms_requests_total{model="",route="/predict/sentiment",status="413",version=""}'

    def counted() -> float:
        line = next(
            (x for x in limited.get("/metrics").text.splitlines() if x.startswith(series)), ""
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = counted()
    declared = limited.post("/predict/sentiment", json={"text": "a" * 60_000})
    chunked = limited.post(
        "/predict/sentiment",
        content=iter([b'{"text": "' + b"a" * 60_000]),
        headers={"content-type": "application/json"},
    )
    assert declared.status_code == chunked.status_code == 413
    assert counted() == before + 2


def test_docs_are_counted_under_their_own_routes(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 200
    text = client.get("/metrics").text
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert f'route="{path}",status="200"' in text, path


def test_image_over_the_pixel_limit(limited: httpx.Client) -> None:
    pixels = np.zeros((300, 300), np.uint8)
    response = limited.post(
        "/predict/image", files={"files": ("huge.png", image_bytes(pixels), "image/png")}
    )
    assert_error(response, 413, "payload_too_large", "huge.png", "300×300", "40000")


def test_decompression_bomb_is_refused_before_decoding(client: httpx.Client) -> None:
    for width, height in ((30_000, 30_000), (100_000, 100_000)):  # ours / Pillow's own guard
        bomb = png_header_only(width, height)
        response = client.post("/predict/image", files={"files": ("bomb.png", bomb, "image/png")})
        assert_error(response, 413, "payload_too_large", "bomb.png")


def test_undecodable_file_is_named(client: httpx.Client) -> None:
    good = image_bytes(digit_strokes())
    files = [
        ("files", ("ok.png", good, "image/png")),
        ("files", ("broken.png", b"this is not an image", "image/png")),
    ]
    response = client.post("/predict/image", files=files)
    assert_error(response, 422, "invalid_input", "broken.png", "not a PNG, JPEG, BMP, GIF or WebP")


def test_truncated_image_is_named(client: httpx.Client) -> None:
    data = image_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    response = client.post(
        "/predict/image", files={"files": ("cut.png", data[: len(data) // 2], "image/png")}
    )
    assert_error(response, 422, "invalid_input", "cut.png")


def test_unsupported_content_types(client: httpx.Client) -> None:
    as_json = client.post("/predict/image", json={"files": "x"})
    assert_error(as_json, 415, "unsupported_media_type", "multipart/form-data")
    as_text = client.post("/predict/image", files={"files": ("notes.txt", b"hello", "text/plain")})
    assert_error(as_text, 415, "unsupported_media_type", "notes.txt", "text/plain")
    form_to_json_route = client.post("/predict/sentiment", data={"text": "great"})
    assert_error(form_to_json_route, 415, "unsupported_media_type", "application/json")
    wav_as_image = client.post(
        "/predict/speech", files={"files": ("a.png", image_bytes(digit_strokes()), "image/png")}
    )
    assert_error(wav_as_image, 415, "unsupported_media_type", "a.png")


def test_undecodable_audio_is_named(client: httpx.Client) -> None:
    response = client.post(
        "/predict/speech", files={"files": ("noise.wav", b"RIFF....WAVEjunk", "audio/wav")}
    )
    assert_error(response, 422, "invalid_input", "noise.wav", "not a readable WAV")


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        ({"text": ""}, "text is empty"),
        ({"text": "   "}, "text is empty"),
        ({"texts": []}, "`texts` is empty"),
        ({"texts": ["good", ""]}, "texts[1] is empty"),
        ({"texts": ["x" * 101]}, "texts[0] has 101 characters; the limit is 100"),
        ({"texts": ["a", "b", "c", "d"]}, "4 texts in one request; the limit is 3"),
        ({"text": "a", "texts": ["b"]}, "exactly one of"),
        ({}, "exactly one of"),
        ({"text": 5}, "text"),
        ({"text": "good", "top_k": 0}, "top_k"),
    ],
)
def test_bad_texts(limited: httpx.Client, payload: dict, phrase: str) -> None:
    assert_error(limited.post("/predict/sentiment", json=payload), 422, "invalid_input", phrase)


def test_malformed_json(client: httpx.Client) -> None:
    response = client.post(
        "/predict/sentiment", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    error = assert_error(response, 422, "invalid_input", "JSON")
    assert not error["message"].startswith(":"), error["message"]


def test_too_many_files(limited: httpx.Client) -> None:
    png = image_bytes(digit_strokes())
    files = [("files", (f"{i}.png", png, "image/png")) for i in range(4)]
    assert_error(limited.post("/predict/image", files=files), 422, "invalid_input", "limit is 3")
    flood = [("files", (f"{i}", b"x", "image/png")) for i in range(200)]  # refused early
    assert_error(limited.post("/predict/image", files=flood), 422, "invalid_input", "limit is 3")


def test_missing_and_empty_files(client: httpx.Client) -> None:
    no_files = client.post("/predict/image", files={"other": ("x.png", b"x", "image/png")})
    assert_error(no_files, 422, "invalid_input", "no file in form field `files`")
    empty = client.post("/predict/image", files={"files": ("empty.png", b"", "image/png")})
    assert_error(empty, 422, "invalid_input", "empty.png: empty file")
    bad_top_k = client.post(
        "/predict/image",
        files={"files": ("a.png", image_bytes(digit_strokes()), "image/png")},
        data={"top_k": "many"},
    )
    assert_error(bad_top_k, 422, "invalid_input", "top_k")


def test_malformed_multipart(client: httpx.Client) -> None:
    no_boundary = client.post(
        "/predict/image", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert_error(no_boundary, 400, "bad_request", "boundary")


def test_unknown_model_and_wrong_task(client: httpx.Client) -> None:
    png = image_bytes(digit_strokes())
    unknown = client.post(
        "/predict/image", files={"files": ("a.png", png, "image/png")}, data={"model": "nope"}
    )
    assert_error(unknown, 404, "model_not_found", "'nope'", "cifar10, mnist")
    wrong_task = client.post("/predict/sentiment", json={"text": "great", "model": "mnist"})
    assert_error(wrong_task, 404, "model_not_found", "image-classification")
    assert_error(client.get("/models/nope"), 404, "model_not_found", "nope")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_error(client.get("/predict"), 404, "not_found", "/predict")
    assert_error(client.get("/predict/image"), 405, "method_not_allowed", "GET")


def test_bad_deadline_header(client: httpx.Client) -> None:
    response = client.post(
        "/predict/sentiment", json={"text": "great"}, headers={"X-Deadline-Ms": "soon"}
    )
    assert_error(response, 422, "invalid_input", "X-Deadline-Ms")
