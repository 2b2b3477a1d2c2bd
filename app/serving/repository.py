"""The model repository on disk, Triton's layout:

    models/<name>/config.json          optional per-model serving settings (app.serving.config)
    models/<name>/<version>/card.json  the contract (app.card)
    models/<name>/<version>/model.onnx and the card's other files

Versions are positive integers (folder names). A flat `models/<name>/` holding card.json is
read as version 1, so repositories from before versions keep working.

This module checks what can be checked from the files alone: the card parses, the ONNX file
exists and its sha256 matches the card, the card's name matches its folder. Whether the graph
itself matches the card is checked by app.serving.runtime once a session exists.

Names that reach this module from a request (model and version in a URL) are checked against
`is_model_name` / `is_version_name` first: a plain folder name, never a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from app.card import CARD_FILE, ModelCard, sha256_of
from app.serving.config import CONFIG_FILE, ConfigError, ModelConfig, read_config

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_VERSION_NAME = re.compile(r"[1-9][0-9]{0,8}")
FLAT_VERSION = "1"


def is_model_name(name: str) -> bool:
    """A plain folder name: letters, digits, `_ . -`, not starting with a dot, no `..`."""
    return bool(_MODEL_NAME.fullmatch(name)) and ".." not in name


def is_version_name(version: str) -> bool:
    return bool(_VERSION_NAME.fullmatch(version))


@dataclass(frozen=True)
class VersionSource:
    """One version folder: a card that passed the file checks, or why it did not."""

    name: str
    version: str
    directory: Path
    card: ModelCard | None
    problem: str | None = None
    fingerprint: tuple[object, ...] = ()

    @property
    def onnx_path(self) -> Path:
        return self.directory / (self.card.onnx_file if self.card else "model.onnx")


@dataclass(frozen=True)
class ModelFolder:
    """One model folder: its config (or why it is invalid) and every version folder found."""

    name: str
    directory: Path
    config: ModelConfig
    config_problem: str | None
    versions: dict[str, VersionSource] = field(default_factory=dict)

    def chosen_versions(self) -> list[str]:
        """The versions the config's policy serves, ascending."""
        found = [int(v) for v in self.versions]
        return [str(v) for v in self.config.version_policy.select(found)]


def model_names(models_dir: Path) -> list[str]:
    """Every sub-folder that looks like a model (a card, or version folders, inside)."""
    if not models_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in models_dir.iterdir()
        if p.is_dir() and is_model_name(p.name) and _looks_like_a_model(p)
    )


def _looks_like_a_model(directory: Path) -> bool:
    if (directory / CARD_FILE).exists() or any(directory.glob("*.onnx")):
        return True
    return any(p.is_dir() and is_version_name(p.name) for p in directory.iterdir())


def read_model(models_dir: Path, name: str) -> ModelFolder | None:
    """The model folder `name` with its config and versions; None if there is none."""
    if not is_model_name(name):
        return None
    directory = models_dir / name
    if not directory.is_dir() or not _looks_like_a_model(directory):
        return None
    try:
        config, config_problem = read_config(directory), None
    except ConfigError as exc:
        config, config_problem = ModelConfig(), str(exc)
    versions = {
        p.name: check_version_dir(name, p.name, p)
        for p in sorted(directory.iterdir(), key=lambda p: p.name)
        if p.is_dir() and is_version_name(p.name)
    }
    if not versions and ((directory / CARD_FILE).exists() or any(directory.glob("*.onnx"))):
        versions[FLAT_VERSION] = check_version_dir(name, FLAT_VERSION, directory)
    return ModelFolder(name, directory, config, config_problem, versions)


def _stat_of(path: Path) -> tuple[object, ...]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def check_version_dir(name: str, version: str, directory: Path) -> VersionSource:
    card_path = directory / CARD_FILE

    def broken(problem: str, card: ModelCard | None = None) -> VersionSource:
        return VersionSource(name, version, directory, card, problem, _stat_of(card_path))

    if not card_path.is_file():
        return broken(f"{card_path}: missing model card")
    try:
        card = ModelCard.load(directory)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        return broken(f"{card_path}: invalid card: {reasons}")
    except (OSError, UnicodeDecodeError) as exc:
        return broken(f"{card_path}: unreadable card: {exc}")
    if card.name != name:
        return broken(f"{card_path}: card name {card.name!r} != folder name {name!r}", card)
    onnx_path = directory / card.onnx_file
    if not onnx_path.is_file():
        return broken(f"{onnx_path}: missing ONNX file", card)
    actual = sha256_of(onnx_path)
    if actual != card.onnx_sha256:
        return broken(
            f"{onnx_path}: sha256 {actual} does not match the card's {card.onnx_sha256} "
            "(file changed or corrupt)",
            card,
        )
    fingerprint = (*_stat_of(card_path), actual)
    return VersionSource(name, version, directory, card, None, fingerprint)


def stat_fingerprint(models_dir: Path, name: str) -> tuple[object, ...]:
    """Cheap change detection for poll mode: sizes and mtimes of the config and of every file
    in the version folders (no hashing; a changed file is re-checked by the reload itself)."""
    directory = models_dir / name
    if not directory.is_dir():
        return ()
    files = [directory / CONFIG_FILE]
    for path in sorted(directory.iterdir()):
        if path.is_file():
            files.append(path)
        elif path.is_dir() and is_version_name(path.name):
            files.extend(sorted(p for p in path.iterdir() if p.is_file()))
    return tuple(_stat_of(p) for p in files)
