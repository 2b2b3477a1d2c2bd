"""The peers of the `peers` scenario: two other ways to serve the same ONNX file on the same
request (the MNIST payload: a multipart upload of a 28×28 PNG in the `files` field, POSTed to
/predict/image), each answering the top-3 labels as JSON.

* `fastapi`: what one writes by hand: a FastAPI route that reads the upload, decodes it with
  Pillow, runs one ONNX Runtime session inline and answers. No batching, no queue, no access log.
* `litserve`: LitServe's LitAPI with its batching (max_batch_size 32, batch_timeout 2 ms, our
  defaults) and one worker, on the CPU.

Both do less than our service: no digit centring (the payload is an MNIST digit already), no
limits, no per-item errors, no metrics; that favours them. Both use one ONNX Runtime thread, since
every server of the scenario is pinned to one core.

    python -m benchmarks.peer_servers fastapi|litserve --onnx models/mnist/model.onnx \
        --labels 0 1 2 3 4 5 6 7 8 9 --port 8100
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, Form, UploadFile
from PIL import Image

API_PATH = "/predict/image"
TOP_K = 3
MAX_BATCH_SIZE = 32
BATCH_TIMEOUT_S = 0.002


def session(onnx_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def decode_png(data: bytes, height: int = 28, width: int = 28) -> np.ndarray:
    """Grayscale float32 [1, H, W] in [0, 1], resized only when the size differs."""
    image = Image.open(io.BytesIO(data)).convert("L")
    if image.size != (width, height):
        image = image.resize((width, height))
    return (np.asarray(image, dtype=np.float32) / 255.0)[None]


def top_k(probabilities: np.ndarray, labels: list[str]) -> dict[str, Any]:
    order = np.argsort(probabilities)[::-1][:TOP_K]
    return {
        "predictions": [
            {"label": labels[i], "probability": round(float(probabilities[i]), 6)} for i in order
        ]
    }


def fastapi_app(onnx_path: Path, labels: list[str]) -> FastAPI:
    sess = session(onnx_path)
    input_name = sess.get_inputs()[0].name
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post(API_PATH)
    async def predict(
        files: Annotated[list[UploadFile], File()], model: Annotated[str, Form()] = ""
    ) -> dict:
        batch = np.stack([decode_png(await f.read()) for f in files])
        probabilities = sess.run(None, {input_name: batch})[0]
        answers = [top_k(p, labels)["predictions"] for p in probabilities]
        return {"model": model, "predictions": answers[0] if len(answers) == 1 else answers}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("fastapi", "litserve"))
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--labels", nargs="+", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "fastapi":
        import uvicorn

        app = fastapi_app(args.onnx, args.labels)
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
    else:
        from benchmarks.peer_litserve import litserve_server

        server = litserve_server(args.onnx, args.labels)
        server.run(
            host=args.host,
            port=args.port,
            num_api_servers=1,
            log_level="warning",
            generate_client_file=False,
        )


if __name__ == "__main__":
    main()
