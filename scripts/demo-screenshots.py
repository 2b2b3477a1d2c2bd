"""Take the README's screenshots of the demo page (docs/demo-page.png, docs/demo-phone.png).

Against a running server with the committed models: draws a 7 on the canvas, classifies a
CIFAR-10 test image, types a review the model is not sure about, then saves the page at desktop
and phone width as small palette PNGs. Needs playwright and Debian's chromium (as tests/browser).

    .venv/bin/python -m app &
    .venv/bin/python scripts/demo-screenshots.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SMS_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
UNSURE_REVIEW = "Not bad, not great, I guess it was fine."


def cifar_tile(index: int) -> bytes:
    """Test image `index` of CIFAR-10 (tiles of 32×32 in a 40-column WebP grid) as a PNG."""
    grid = Image.open(DATA_DIR / "cifar10" / "test_00.webp").convert("RGB")
    row, column = divmod(index, 40)
    tile = grid.crop((32 * column, 32 * row, 32 * column + 32, 32 * row + 32))
    buffer = io.BytesIO()
    tile.save(buffer, format="PNG")
    return buffer.getvalue()


def draw_seven(page: Page) -> None:
    box = page.locator("#digit-canvas").bounding_box()
    assert box is not None

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    page.mouse.move(*at(0.25, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.75, 0.22), steps=12)
    page.mouse.move(*at(0.42, 0.85), steps=16)
    page.mouse.up()
    expect(page.locator("#digit-result .label")).to_have_text("7")


def fill_the_page(page: Page) -> None:
    page.goto("/")
    draw_seven(page)
    page.locator("#image-model").select_option("cifar10")
    page.locator("#image-file").set_input_files(
        files=[{"name": "ship.png", "mimeType": "image/png", "buffer": cifar_tile(1)}]
    )
    page.get_by_role("button", name="Classify image").click()
    expect(page.locator("#image-result")).to_have_attribute("data-state", "answered")
    page.get_by_label("Review (English)").fill(UNSURE_REVIEW)
    page.get_by_role("button", name="Is it positive?").click()
    expect(page.locator("#sentiment-result .unsure")).to_be_visible()


def save_small(png: bytes, path: Path) -> None:
    """A 64-colour palette PNG: the page is flat colours, so this keeps it sharp and small."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width}×{image.height}, {path.stat().st_size // 1024} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        desktop = browser.new_page(base_url=args.url, viewport={"width": 1100, "height": 760})
        fill_the_page(desktop)
        save_small(desktop.screenshot(), args.out / "demo-page.png")
        phone = browser.new_page(
            base_url=args.url, viewport={"width": 390, "height": 844}, is_mobile=True
        )
        fill_the_page(phone)
        phone.locator("#digit").scroll_into_view_if_needed()
        save_small(phone.screenshot(), args.out / "demo-phone.png")
        browser.close()


if __name__ == "__main__":
    main()
