"""The model repository's layout: ``models/<name>/<version>/`` folders, as TF Serving has them.

A version folder is complete once its SavedModel and both contract files are there (the
trainer moves a finished export into place whole; a copy in progress is not complete).
The registry serves the highest complete version; a configured folder that is itself a
version folder is served as it is.
"""

from __future__ import annotations

from pathlib import Path

from service.model.contract import LABELS, METADATA

FILES = ("saved_model.pb", METADATA, LABELS)


def is_complete(version_dir: Path) -> bool:
    return all((version_dir / f).is_file() for f in FILES)


def has_version(model_dir: Path, version: str) -> bool:
    """``version`` names a complete numbered version folder in ``model_dir``."""
    return version.isdigit() and is_complete(model_dir / version)


def resolve_version(model_dir: Path) -> Path:
    """``model_dir`` itself if it is a version folder, else its highest complete version."""
    if is_complete(model_dir):
        return model_dir
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist")
    versions = sorted(
        (p for p in model_dir.iterdir() if p.name.isdigit() and is_complete(p)),
        key=lambda p: int(p.name),
    )
    if not versions:
        raise FileNotFoundError(f"no complete model version in {model_dir}")
    return versions[-1]
