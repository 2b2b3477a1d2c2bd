"""The request payloads, built from real test samples of the shared datasets.

Every scenario of one endpoint sends the same bytes: the raw ONNX Runtime scenario decodes
these very bytes with the server's own modality code, the predict and no-op routes receive them.

* mnist:     test digit 0 of t10k-images (a "7"), as a 28×28 grayscale PNG;
* cifar10:   tile 0 of test_00.webp (a cat), as a 32×32 RGB PNG;
* sentiment: the first review of imdb/test.jsonl.gz whose length is the median length of the
             first 1,000 reviews (typical, not a one-liner);
* speech:    the first FLAC (sorted) of speech_commands/yes/, converted to 16-bit PCM WAV.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BOUNDARY = "benchmarkboundary7f3a9c"
ENDPOINTS = ("mnist", "cifar10", "sentiment", "speech")
MODEL_OF = {"mnist": "mnist", "cifar10": "cifar10", "sentiment": "imdb", "speech": "speech"}


@dataclass
class Payload:
    """One endpoint's request: route paths, headers and body, plus the raw item for ORT."""

    endpoint: str  # mnist | cifar10 | sentiment | speech
    model: str
    predict_path: str
    noop_path: str
    content_type: str
    body: bytes
    item: bytes | str  # the raw item the modality's decode() receives (file bytes or text)
    filename: str | None
    source: str  # where the sample comes from, for the report
    facts: dict[str, object] = field(default_factory=dict)

    def path(self, route: str) -> str:
        return self.noop_path if route == "noop" else self.predict_path

    def request_bytes(self, route: str, host: str, port: int) -> bytes:
        """The whole HTTP/1.1 request, encoded once and sent as is on every request."""
        head = (
            f"POST {self.path(route)} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Accept: */*\r\n"
            "\r\n"
        )
        return head.encode("ascii") + self.body


def _multipart(filename: str, file_type: str, data: bytes, fields: dict[str, str]) -> bytes:
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{BOUNDARY}\r\n".encode())
        out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode() + b"\r\n")
    out.write(f"--{BOUNDARY}\r\n".encode())
    out.write(
        f'Content-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        f"Content-Type: {file_type}\r\n\r\n".encode()
    )
    out.write(data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload_payload(
    endpoint: str, route: str, filename: str, file_type: str, data: bytes, source: str
) -> Payload:
    model = MODEL_OF[endpoint]
    return Payload(
        endpoint=endpoint,
        model=model,
        predict_path=f"/predict/{route}",
        noop_path=f"/noop/{route}",
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        body=_multipart(filename, file_type, data, {"model": model}),
        item=data,
        filename=filename,
        source=source,
        facts={"file_bytes": len(data)},
    )


def mnist_payload(datasets: Path) -> Payload:
    path = datasets / "mnist" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        magic, _count, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, f"{path}: not an idx3 image file"
        digit = np.frombuffer(f.read(rows * cols), np.uint8).reshape(rows, cols)
    with gzip.open(datasets / "mnist" / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        f.read(8)
        label = f.read(1)[0]
    payload = _upload_payload(
        "mnist",
        "image",
        "digit.png",
        "image/png",
        _png(digit),
        f"{path.relative_to(datasets)} image 0 (label {label}), 28×28 grayscale PNG",
    )
    payload.facts["label"] = int(label)
    return payload


def cifar10_payload(datasets: Path) -> Payload:
    path = datasets / "cifar10" / "test_00.webp"
    grid = np.asarray(Image.open(path).convert("RGB"))
    tile = np.ascontiguousarray(grid[:32, :32])  # image 0: row 0, column 0
    classes = (datasets / "cifar10" / "classes.txt").read_text().split()
    label = classes[int((datasets / "cifar10" / "test_labels.txt").read_text().split()[0])]
    payload = _upload_payload(
        "cifar10",
        "image",
        "tile.png",
        "image/png",
        _png(tile),
        f"{path.relative_to(datasets)} tile 0 (label {label}), 32×32 RGB PNG",
    )
    payload.facts["label"] = label
    return payload


def sentiment_payload(datasets: Path) -> Payload:
    path = datasets / "imdb" / "test.jsonl.gz"
    records = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            records.append(json.loads(line))
            if len(records) == 1000:
                break
    median = sorted(len(r["text"]) for r in records)[len(records) // 2]
    record = next(r for r in records if len(r["text"]) == median)
    body = json.dumps({"text": record["text"]}).encode()
    return Payload(
        endpoint="sentiment",
        model="imdb",
        predict_path="/predict/sentiment",
        noop_path="/noop/sentiment",
        content_type="application/json",
        body=body,
        item=record["text"],
        filename=None,
        source=f"{path.relative_to(datasets)} review {record['id']} ({median} characters, "
        f"the median length of the first 1,000 reviews; label {record['label']})",
        facts={"chars": median, "words": len(record["text"].split()), "id": record["id"]},
    )


def speech_payload(datasets: Path) -> Payload:
    import soundfile

    folder = datasets / "speech_commands" / "yes"
    flac = sorted(folder.glob("*.flac"))[0]
    samples, rate = soundfile.read(flac, dtype="int16")
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    payload = _upload_payload(
        "speech",
        "speech",
        "clip.wav",
        "audio/wav",
        buffer.getvalue(),
        f"{flac.relative_to(datasets)} converted to 16-bit PCM WAV "
        f"({len(samples) / rate:.2f} s at {rate} Hz)",
    )
    payload.facts.update(seconds=round(len(samples) / rate, 3), sample_rate=rate)
    return payload


BUILDERS = {
    "mnist": mnist_payload,
    "cifar10": cifar10_payload,
    "sentiment": sentiment_payload,
    "speech": speech_payload,
}


def load_payloads(datasets: Path, endpoints: tuple[str, ...] = ENDPOINTS) -> dict[str, Payload]:
    return {name: BUILDERS[name](datasets) for name in endpoints}
