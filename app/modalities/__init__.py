"""The modalities the server knows.

Each module brings its pipeline (`MODALITY`, a Modality subclass serving one card `task`) and
its HTTP routes (`router` serving `ENDPOINT`, and `noop_router` for the benchmark-only routes).
Adding a modality: write one module like these, add it to MODULES.
"""

from __future__ import annotations

from types import ModuleType

from app.modalities import audio, image, text
from app.modalities.base import Modality

MODULES: tuple[ModuleType, ...] = (image, text, audio)

MODALITIES: dict[str, type[Modality]] = {
    module.MODALITY.task: module.MODALITY for module in MODULES
}

ENDPOINTS: dict[str, str] = {module.MODALITY.task: module.ENDPOINT for module in MODULES}
