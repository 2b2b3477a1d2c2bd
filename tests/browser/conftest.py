"""Browser tests: the committed models served by the real app, driven through a headless Chromium
(Debian's `chromium` package) with Playwright for Python, no `playwright install`.

Where no browser can be had (no playwright module or no chromium binary) every test here skips
with one reason; scripts/test.sh installs both when it runs as root (as CI does). Set
SMS_CHROMIUM to use another Chromium binary.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import (
    CHROMIUM_ARGS,
    NO_PLAYWRIGHT,
    PageLog,
    chromium_path,
    recognised_wav,
)
from serving_harness import COMMITTED_MODELS, running_server, settings_for


def _no_browser_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return NO_PLAYWRIGHT
    if chromium_path() is None:
        return "no browser: no chromium binary (apt-get install chromium, or set SMS_CHROMIUM)"
    return None


NO_BROWSER = _no_browser_reason()


_skipped_for_no_browser: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)
            if NO_BROWSER:
                item.add_marker(pytest.mark.skip(reason=NO_BROWSER))
                _skipped_for_no_browser.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One loud line when the browser tests could not run at all."""
    if _skipped_for_no_browser:
        terminalreporter.write_line(
            f"{len(_skipped_for_no_browser)} browser tests skipped, {NO_BROWSER}",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The committed models, served as shipped."""
    if not (COMMITTED_MODELS / "mnist").is_dir():
        pytest.skip("no committed models in models/")
    with running_server(settings_for(COMMITTED_MODELS, access_log=False)) as url:
        yield url


@pytest.fixture(scope="session")
def yes_wav(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    return recognised_wav(server_url, "yes", tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def browser(yes_wav: Path | None) -> Iterator[object]:
    """One headless Chromium for the session; its fake microphone plays a "yes" when the
    shared data is there."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if yes_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={yes_wav}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_path(), args=args, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page_and_log(browser: object, server_url: str) -> Iterator[tuple[object, PageLog]]:
    context = browser.new_context(  # type: ignore[attr-defined]
        base_url=server_url, permissions=["microphone"], viewport={"width": 1100, "height": 1000}
    )
    page = context.new_page()
    log = PageLog()
    page.on("request", lambda request: log.requests.append(request.url))
    page.on("requestfailed", lambda request: log.failed(request.url, request.failure))
    page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)

    def dismiss(dialog: object) -> None:
        log.dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dismiss)
    page.set_default_timeout(30_000)
    try:
        yield page, log
    finally:
        context.close()
