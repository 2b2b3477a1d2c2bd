"""Check in a real browser that Swagger UI's "Try it out" works for the three predict routes.

Not part of the test suite or CI (it needs a browser): run it by hand after changing how the
routes describe their request bodies. For each of POST /predict/image (a PNG through the file
input), /predict/sentiment (the JSON example) and /predict/speech (a WAV through the file input)
it opens /docs, clicks "Try it out", fills the form, clicks "Execute" and checks that the
rendered response says 200 with predictions; a screenshot of each operation goes to
`<out>/swagger-<route>.png`.

Setup (Debian; playwright in a venv of its own, driving the system Chromium, no
`playwright install`):

    apt-get install -y chromium
    python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright
    .venv/bin/python -m app &                        # or any running server with the models
    /tmp/pw/bin/python scripts/swagger-check.py --url http://127.0.0.1:8000

/docs serves Swagger UI from the package (app/http/pages.py), so this works offline. For a
server from before that, which loads it from the jsDelivr CDN, unpack the npm package and pass
its folder: the CDN requests are then answered from it.

    npm pack swagger-ui-dist@5 && tar xzf swagger-ui-dist-*.tgz    # gives ./package
    /tmp/pw/bin/python scripts/swagger-check.py --url ... --swagger-dist package

Exit status 0 when all three answered 200, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import struct
import sys
import tempfile
import wave
import zlib
from pathlib import Path

from playwright.sync_api import Page, Route, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"


def digit_png() -> bytes:
    """A 28×28 grey PNG of a white bar on black (written with zlib, no imaging library)."""
    rows = b"".join(
        b"\x00" + bytes(255 if 6 <= y < 22 and 12 <= x < 16 else 0 for x in range(28))
        for y in range(28)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz mono 16-bit WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (
            int(9000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate))
        )
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def try_it_out(page: Page, operation_id: str, fill, out: Path, name: str) -> tuple[str, str]:
    """Expand the operation, Try it out, fill, Execute; the rendered status and body."""
    operation = page.locator(f"#operations-predict-{operation_id}")
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    fill(operation)
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=30_000)
    body = operation.locator(".live-responses-table .response-col_description pre").first
    body.wait_for(timeout=10_000)
    top = operation.bounding_box()
    bottom = operation.locator(".live-responses-table").first.bounding_box()
    assert top and bottom
    clip = {"x": top["x"], "y": top["y"], "width": top["width"]}
    clip["height"] = bottom["y"] + bottom["height"] - top["y"]
    # From the operation's head to the server's response (the documented responses follow).
    page.screenshot(path=str(out / f"swagger-{name}.png"), clip=clip, full_page=True)
    return status.inner_text().strip(), body.inner_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
    parser.add_argument("--swagger-dist", type=Path, help="unpacked swagger-ui-dist package")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path("/tmp"), help="screenshot folder")
    parser.add_argument("--image-model", default="mnist")
    args = parser.parse_args()
    files = Path(tempfile.mkdtemp())
    (files / "digit.png").write_bytes(digit_png())
    (files / "tone.wav").write_bytes(tone_wav())

    def fill_image(operation) -> None:
        operation.locator("tr[data-property-name=files] input[type=file]").set_input_files(
            files / "digit.png"
        )
        operation.locator("tr[data-property-name=model] input[type=text]").fill(args.image_model)

    def fill_sentiment(operation) -> None:
        body = operation.locator("textarea.body-param__text")
        assert json.loads(body.input_value()), "no JSON example in the request body"

    def fill_speech(operation) -> None:
        operation.locator("tr[data-property-name=files] input[type=file]").set_input_files(
            files / "tone.wav"
        )

    checks = [
        ("image", "predict_image_predict_image_post", fill_image),
        ("sentiment", "predict_sentiment_predict_sentiment_post", fill_sentiment),
        ("speech", "predict_speech_predict_speech_post", fill_speech),
    ]
    failures = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        if args.swagger_dist:

            def from_dist(route: Route) -> None:
                asset = args.swagger_dist / route.request.url.removeprefix(CDN).split("?")[0]
                if asset.is_file():
                    route.fulfill(path=str(asset))
                else:
                    route.abort()

            page.route(CDN + "**", from_dist)
            page.route("https://fastapi.tiangolo.com/**", lambda route: route.abort())  # favicon
        for name, operation_id, fill in checks:
            page.goto(args.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            try:
                status, body = try_it_out(page, operation_id, fill, args.out, name)
            except Exception as exc:
                print(f"{name}: FAILED: {exc}")
                failures += 1
                continue
            ok = status == "200" and '"predictions"' in body
            failures += not ok
            print(f"{name}: {'ok' if ok else 'FAILED'}: status {status}, {body[:160]!r}")
        browser.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
