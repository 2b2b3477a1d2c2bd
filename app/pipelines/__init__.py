"""The pipelines the server knows, one per kind of input, by the card `task` each serves.

Adding a kind of input: write one module like these (a Pipeline subclass) and list it here;
the HTTP layer declares its route in app/http/predict.py.
"""

from __future__ import annotations

from app.pipelines.audio import AudioPipeline
from app.pipelines.base import Pipeline
from app.pipelines.image import ImagePipeline
from app.pipelines.text import TextPipeline

PIPELINES: dict[str, type[Pipeline]] = {
    pipeline.task: pipeline for pipeline in (ImagePipeline, TextPipeline, AudioPipeline)
}
