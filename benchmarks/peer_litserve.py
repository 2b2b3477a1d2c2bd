"""The LitServe peer of the `peers` scenario (see benchmarks/peer_servers.py): its own module,
importing litserve at the top, because LitServe pickles the API object into its worker process
and the class must be importable there. No `from __future__ import annotations`: LitServe reads
`decode_request`'s annotation at run time to decide to parse the form."""

from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
from fastapi import Request

from benchmarks.peer_servers import (
    API_PATH,
    BATCH_TIMEOUT_S,
    MAX_BATCH_SIZE,
    decode_png,
    session,
    top_k,
)


class MnistAPI(ls.LitAPI):
    """LitServe's five hooks around one ONNX Runtime session, batching on."""

    def __init__(self, onnx_path: Path, labels: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.onnx_path = onnx_path
        self.labels = labels

    def setup(self, device: str) -> None:
        self.session = session(self.onnx_path)
        self.input_name = self.session.get_inputs()[0].name

    def decode_request(self, request: Request) -> np.ndarray:
        return decode_png(request["files"].file.read())

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return top_k(output, self.labels)


def litserve_server(onnx_path: Path, labels: list[str]) -> ls.LitServer:
    api = MnistAPI(
        onnx_path,
        labels,
        max_batch_size=MAX_BATCH_SIZE,
        batch_timeout=BATCH_TIMEOUT_S,
        api_path=API_PATH,
    )
    return ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
