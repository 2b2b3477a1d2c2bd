"""The demo page and the docs in a real browser, against the committed models: what a person
does (draw, pick a file, type, speak) and what they must see; that nothing is fetched from
another host; that a hostile file name stays text."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from browser_harness import DATA_DIR, NO_PLAYWRIGHT, PageLog, png_bytes, recognised_wav
from data_skips import needs_data

pytest.importorskip("playwright", reason=NO_PLAYWRIGHT)
from playwright.sync_api import Page, expect


def _served_from(log: PageLog, server_url: str) -> None:
    own = server_url.split("//", 1)[1]
    assert log.hosts() <= {own}, (
        f"requests to other hosts: {[u for u in log.sent() if own not in u]}"
    )


def test_drawing_a_seven_reads_seven(page_and_log: tuple[Page, PageLog], server_url: str) -> None:
    page, log = page_and_log
    page.goto("/")
    canvas = page.locator("#digit-canvas")
    box = canvas.bounding_box()
    assert box is not None

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    # One stroke, as a person draws a 7: the bar left to right, then down and to the left.
    page.mouse.move(*at(0.25, 0.22))
    page.mouse.down()
    page.mouse.move(*at(0.75, 0.22), steps=12)
    page.mouse.move(*at(0.42, 0.85), steps=16)
    page.mouse.up()

    result = page.locator("#digit-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".label")).to_have_text("7")
    expect(result.locator(".topk li")).to_have_count(3)
    expect(result.locator(".meta")).to_contain_text(" ms")

    page.get_by_role("button", name="Clear").focus()
    page.keyboard.press("Enter")  # the clear button works from the keyboard
    expect(result.locator(".label")).to_have_count(0)
    _served_from(log, server_url)
    assert not log.console_errors, log.console_errors


def test_a_finger_draws_too(browser: object, server_url: str) -> None:
    """Touch events (as a phone sends them, through the DevTools protocol) draw a 1."""
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=server_url, viewport={"width": 390, "height": 844}, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto("/")
        box = page.locator("#digit-canvas").bounding_box()
        assert box is not None
        touch = context.new_cdp_session(page)
        x = box["x"] + 0.5 * box["width"]
        ys = [box["y"] + box["height"] * (0.15 + 0.7 * i / 20) for i in range(21)]
        touch.send(
            "Input.dispatchTouchEvent",
            {"type": "touchStart", "touchPoints": [{"x": x, "y": ys[0]}]},
        )
        for y in ys[1:]:
            touch.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]}
            )
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        result = page.locator("#digit-result")
        expect(result).to_have_attribute("data-state", "answered")
        expect(result.locator(".label")).to_have_text("1")
    finally:
        context.close()


@pytest.mark.data
def test_an_uploaded_mnist_png_gets_its_label(
    page_and_log: tuple[Page, PageLog], server_url: str
) -> None:
    images = needs_data(DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = gzip.decompress((DATA_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    digits = np.frombuffer(gzip.decompress(images.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
    index = 1  # a "2": not the digit the canvas test draws
    page, log = page_and_log
    page.goto("/")
    # Dropped on the pick-or-drop zone, as from a file manager.
    dropped = page.evaluate_handle(
        """(bytes) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], "two.png", {type: "image/png"}));
            return transfer;
        }""",
        list(png_bytes(digits[index])),
    )
    page.dispatch_event("#image-drop", "drop", {"dataTransfer": dropped})
    expect(page.locator("#image-drop span")).to_have_text("chosen: two.png")
    page.locator("#image-model").select_option("mnist")
    page.get_by_role("button", name="Classify image").click()
    result = page.locator("#image-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".label")).to_have_text(str(labels[8 + index]))
    expect(result.locator(".file")).to_have_text("file: two.png")
    _served_from(log, server_url)


@pytest.mark.data
def test_an_uploaded_wav_gets_its_word(
    page_and_log: tuple[Page, PageLog], server_url: str, tmp_path: Path
) -> None:
    needs_data(DATA_DIR / "speech_commands" / "no")
    wav = recognised_wav(server_url, "no", tmp_path)
    assert wav is not None, "the speech model recognised none of the first 12 'no' clips"
    page, log = page_and_log
    page.goto("/")
    page.locator("#speech-file").set_input_files(str(wav))
    page.get_by_role("button", name="Recognise WAV").click()
    result = page.locator("#speech-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".label")).to_have_text("no")
    _served_from(log, server_url)


@pytest.mark.data
def test_the_microphone_hears_yes(
    page_and_log: tuple[Page, PageLog], server_url: str, yes_wav: Path | None
) -> None:
    needs_data(DATA_DIR / "speech_commands" / "yes")
    assert yes_wav is not None, "the speech model recognised none of the first 12 'yes' clips"
    page, log = page_and_log
    page.goto("/")
    page.get_by_role("button", name="Record").click()
    result = page.locator("#speech-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".label")).to_have_text("yes")
    _served_from(log, server_url)
    assert not log.console_errors, log.console_errors


def test_a_typed_review_gets_a_sentiment(
    page_and_log: tuple[Page, PageLog], server_url: str
) -> None:
    page, log = page_and_log
    page.goto("/")
    page.get_by_label("Review (English)").fill(
        "A dreadful, boring film. The plot made no sense and the acting was wooden."
    )
    page.get_by_role("button", name="Is it positive?").click()
    result = page.locator("#sentiment-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".label")).to_have_text("negative")
    expect(result.locator(".topk li")).to_have_count(2)
    _served_from(log, server_url)


def test_an_unsure_answer_says_not_sure(page_and_log: tuple[Page, PageLog]) -> None:
    page, _ = page_and_log
    page.goto("/")
    page.get_by_label("Review (English)").fill("Not bad, not great, I guess it was fine.")
    page.get_by_role("button", name="Is it positive?").click()
    result = page.locator("#sentiment-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".unsure")).to_contain_text("not sure")


def test_the_reason_for_abstaining_is_shown(page_and_log: tuple[Page, PageLog]) -> None:
    """Answers will soon say why the model abstains (`reason`); the page shows it. The answer
    is the real server's, with a reason added on its way to the page."""
    page, _ = page_and_log

    def with_reason(route: object) -> None:
        answer = route.fetch()  # type: ignore[attr-defined]
        body = answer.json()
        body["predictions"][0].update(abstain=True, reason="out_of_distribution")
        route.fulfill(response=answer, json=body)  # type: ignore[attr-defined]

    page.route("**/predict/sentiment", with_reason)
    page.goto("/")
    page.get_by_label("Review (English)").fill("<b>not html</b>")
    page.get_by_role("button", name="Is it positive?").click()
    unsure = page.locator("#sentiment-result .unsure")
    expect(unsure).to_contain_text("not sure")
    expect(unsure).to_contain_text("does not look like what it was trained on")
    expect(unsure.locator(".reason")).to_have_text("out_of_distribution")


def test_an_api_error_is_shown_as_its_message(page_and_log: tuple[Page, PageLog]) -> None:
    page, _ = page_and_log
    page.goto("/")
    page.locator("#speech-file").set_input_files(
        files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not a wav at all"}]
    )
    page.get_by_role("button", name="Recognise WAV").click()
    result = page.locator("#speech-result")
    expect(result).to_have_attribute("data-state", "error")
    expect(result.get_by_role("alert")).to_contain_text("notes.wav")


def test_a_hostile_file_name_stays_text(
    page_and_log: tuple[Page, PageLog], server_url: str
) -> None:
    name = "<img src=x onerror=alert(1)>.png"
    page, log = page_and_log
    page.goto("/")
    blank = png_bytes(np.zeros((28, 28), np.uint8))
    page.locator("#image-file").set_input_files(
        files=[{"name": name, "mimeType": "image/png", "buffer": blank}]
    )
    page.get_by_role("button", name="Classify image").click()
    result = page.locator("#image-result")
    expect(result).to_have_attribute("data-state", "answered")
    expect(result.locator(".file")).to_have_text(f"file: {name}")
    expect(page.locator("#image-drop span")).to_have_text(f"chosen: {name}")
    assert page.locator("main img").count() == 0, "the file name became an element"
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert log.dialogs == [], f"a script ran: {log.dialogs}"
    _served_from(log, server_url)


def test_the_page_is_served_with_its_policy(page_and_log: tuple[Page, PageLog]) -> None:
    page, _ = page_and_log
    response = page.goto("/")
    assert response is not None
    assert "default-src 'self'" in response.headers["content-security-policy"]
    blocked = page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener("securitypolicyviolation", () => resolve(true));
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.append(script);
            setTimeout(() => resolve(false), 500);
        })"""
    )
    assert blocked and page.evaluate("window.inlineRan") is None, "an inline script ran"


def test_the_page_fits_a_phone(browser: object, server_url: str) -> None:
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=server_url, viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True
    )
    try:
        page = context.new_page()
        page.goto("/")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways on a phone ({width} px wide)"
        canvas = page.locator("#digit-canvas").bounding_box()
        assert canvas is not None and canvas["width"] <= 375
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_render_offline(
    page_and_log: tuple[Page, PageLog], server_url: str, path: str
) -> None:
    page, log = page_and_log
    page.goto(path)
    if path == "/docs":
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        expect(page.locator(".opblock-summary-path", has_text="/predict/image")).to_have_count(1)
    else:
        expect(page.get_by_role("heading", name="Small model server").first).to_be_visible()
        expect(page.get_by_text("/predict/image").first).to_be_attached()
    page.wait_for_load_state("networkidle")
    text = page.evaluate("document.body.innerText")
    assert len(text) > 500, f"{path} rendered almost nothing"
    _served_from(log, server_url)
