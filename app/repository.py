"""The model repository: `models/<name>/` holding `model.onnx` and `card.json` (see app.card).

This module checks what can be checked from the files alone: the card parses, the ONNX file
exists and its sha256 matches the card, the card's name matches its folder. Whether the graph
itself matches the card is checked by app.runtime once a session exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from app.card import CARD_FILE, ModelCard, sha256_of


@dataclass(frozen=True)
class ModelSource:
    """One folder of the repository: a card that passed the file checks, or why it did not."""

    name: str
    directory: Path
    card: ModelCard | None
    problem: str | None = None

    @property
    def onnx_path(self) -> Path:
        return self.directory / (self.card.onnx_file if self.card else "model.onnx")


def discover(models_dir: Path) -> list[ModelSource]:
    """Every sub-folder that looks like a model (has a card or an .onnx file), checked."""
    if not models_dir.is_dir():
        return []
    sources = []
    for directory in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        if directory.name.startswith((".", "_")):
            continue
        if not (directory / CARD_FILE).exists() and not any(directory.glob("*.onnx")):
            continue
        sources.append(check_model_dir(directory))
    return sources


def check_model_dir(directory: Path) -> ModelSource:
    name = directory.name
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        return ModelSource(name, directory, None, f"{card_path}: missing model card")
    try:
        card = ModelCard.load(directory)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return ModelSource(name, directory, None, f"{card_path}: invalid card: {reasons}")
    except (OSError, UnicodeDecodeError) as exc:
        return ModelSource(name, directory, None, f"{card_path}: unreadable card: {exc}")
    if card.name != name:
        return ModelSource(
            name, directory, card, f"{card_path}: card name {card.name!r} != folder name {name!r}"
        )
    onnx_path = directory / card.onnx_file
    if not onnx_path.is_file():
        return ModelSource(name, directory, card, f"{onnx_path}: missing ONNX file")
    actual = sha256_of(onnx_path)
    if actual != card.onnx_sha256:
        return ModelSource(
            name,
            directory,
            card,
            f"{onnx_path}: sha256 {actual} does not match the card's {card.onnx_sha256} "
            "(file changed or corrupt)",
        )
    return ModelSource(name, directory, card)
