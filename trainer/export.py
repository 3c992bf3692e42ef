"""Write an exported version: ``models/<name>/<version>/`` with SavedModel, labels, metadata.

The folder is assembled under a hidden temporary name and renamed when complete, so the
service (which only looks at numbered folders) never sees half a model. The contract
files themselves are trainer/contract.py's.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from trainer.contract import SIGNATURE, ModelContract
from trainer.errors import TrainerError
from trainer.evaluate import Exported, load_exported
from trainer.revision import code_revision

# Called on the reloaded export before it is published: it may write reports into the
# folder and returns the contract to publish (the one it was given, with details added).
Finish = Callable[[Exported, Path], ModelContract]


class Exportable(Protocol):
    """What export needs: a Keras model, or a ``Composite`` of exported versions."""

    def export(self, filepath: str, format: str = ..., verbose: bool = ...) -> Any: ...

    def __call__(self, x: Any, training: bool = ...) -> Any: ...


class Composite(tf.Module):
    """Exported versions called through their signatures, saved as one new SavedModel.

    A subclass says how their outputs become the new probabilities twice: ``combine`` in
    the graph (the exported signature) and ``reference`` outside it, in NumPy (what the
    export is checked against). Exportable like a Keras model.
    """

    def __init__(self, name: str, folders: Sequence[Path], contracts: Sequence[ModelContract]):
        super().__init__(name=name)
        # Attributes of a tf.Module are tracked: saving this module writes the versions'
        # variables into the new SavedModel, so it does not depend on their folders.
        self.members = [tf.saved_model.load(str(f)) for f in folders]
        self.fns = [m.signatures[c.signature] for m, c in zip(self.members, contracts, strict=True)]
        spec = tf.TensorSpec(contracts[0].input.shape, contracts[0].input.dtype, name="image")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def combine(self, outputs: list[tf.Tensor]) -> tf.Tensor:
        raise NotImplementedError

    def reference(self, outputs: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probs": self.combine([next(iter(fn(image).values())) for fn in self.fns])}

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Version by version, outside the graph: the reference the export is checked against."""
        return self.reference([next(iter(fn(tf.constant(x)).values())).numpy() for fn in self.fns])

    def export(self, filepath: str, format: str = "tf_saved_model", verbose: bool = False) -> None:
        tf.saved_model.save(self, filepath, signatures={SIGNATURE: self.serve})


def next_version(models_dir: Path, name: str) -> int:
    folder = models_dir / name
    versions = (
        [int(p.name) for p in folder.glob("*") if p.name.isdigit()] if folder.exists() else []
    )
    return max(versions, default=0) + 1


def base_contract(name: str, version: int, labels: Sequence[str], size: int) -> ModelContract:
    """The contract of a new export: this trainer's rules, ``size`` px, and its provenance."""
    return ModelContract.new(
        name,
        version,
        labels,
        size,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tensorflow=tf.__version__,
        keras=keras.__version__,
        python=platform.python_version(),
        code_revision=code_revision(),
    )


def write_saved_model(model: Exportable, tmp: Path, sample: np.ndarray) -> float:
    """Export, reload and compare with the in-memory model; return the largest difference."""
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp))
    got = next(iter(reloaded.signatures[SIGNATURE](tf.constant(sample)).values())).numpy()
    want = model(sample, training=False)
    diff = float(np.max(np.abs(got - np.asarray(want))))
    if diff > 1e-4:
        raise TrainerError(f"exported model disagrees with the trained one (max diff {diff})")
    return diff


def export(
    model: Exportable,
    models_dir: Path,
    contract: ModelContract,
    sample: np.ndarray,
    finish: Finish | None = None,
) -> Path:
    """Write the versioned model folder atomically.

    Args:
        model: the trained Keras model or a Composite (uint8 images in, probabilities out).
        models_dir: the root holding ``<name>/<version>/``.
        contract: what metadata.json will say (``base_contract`` plus training details).
        sample: a few uint8 images to check the reloaded export against ``model``.
        finish: optional, run on the reloaded export (whose contract has the export check
            added) before the rename; the contract it returns is the one published.
    """
    final = models_dir / contract.name / str(contract.version)
    if final.exists():
        raise TrainerError(f"{final} already exists; model versions are never overwritten")
    tmp = final.parent / f".tmp-{contract.version}-{int(time.time())}"
    tmp.mkdir(parents=True)
    try:
        diff = write_saved_model(model, tmp, sample)
        contract.with_details(export_check_max_diff=diff).write(tmp)
        if finish is not None:
            finish(load_exported(tmp), tmp).write(tmp)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
