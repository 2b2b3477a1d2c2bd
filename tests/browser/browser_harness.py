"""Helpers of the browser tests (tests/browser), a module of their own: test modules that
import from `conftest` get whichever conftest was imported first."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from data_skips import data_dir

LOADED = {"http", "https", "ws", "wss"}  # not data: or blob:, which are made in the page
DATA_DIR = data_dir()
NO_PLAYWRIGHT = "no browser: the playwright module is missing (pip install -e '.[dev]')"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
    "--use-fake-device-for-media-stream",
]


def chromium_path() -> str | None:
    """$SMS_CHROMIUM when set (None if it is not an executable), else `chromium` on PATH."""
    chosen = os.environ.get("SMS_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return shutil.which("chromium")


def speech_clips(word: str, count: int) -> list[Path]:
    folder = DATA_DIR / "speech_commands" / word
    return sorted(folder.glob("*.flac"))[:count] if folder.is_dir() else []


def recognised_wav(url: str, word: str, tmp: Path) -> Path | None:
    """A real Speech Commands clip of `word` as a 16-bit WAV, the one the server itself is
    surest of: the browser tests check the page, not the model's accuracy."""
    import soundfile

    clips = speech_clips(word, 12)
    if not clips:
        return None
    files = [("files", (c.name, c.read_bytes(), "audio/flac")) for c in clips]
    answer = httpx.post(f"{url}/predict/speech", files=files, timeout=60).json()
    scored = [
        (p["probability"], clip)
        for p, clip in zip(answer["predictions"], clips, strict=True)
        if p["label"] == word and not p["abstain"]
    ]
    if not scored:
        return None
    samples, rate = soundfile.read(max(scored)[1], dtype="int16")
    path = tmp / f"{word}.wav"
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


class PageLog:
    """What a page did that a test wants to see afterwards: every URL it requested, every
    dialog it opened (an injected script would), every console error (CSP violations), and the
    requests its Content-Security-Policy stopped before they left the browser."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.blocked: list[str] = []

    def failed(self, url: str, reason: str | None) -> None:
        if reason in ("csp", "net::ERR_BLOCKED_BY_CSP"):  # Chromium reports "csp"
            self.blocked.append(url)

    def sent(self) -> list[str]:
        """The requests that left the browser: those made, less those its policy stopped."""
        return [url for url in self.requests if url not in self.blocked]

    def hosts(self) -> set[str]:
        return {urlsplit(url).netloc for url in self.sent() if urlsplit(url).scheme in LOADED}


def png_bytes(pixels: object) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # type: ignore[arg-type]
    return buffer.getvalue()
