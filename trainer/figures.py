"""Figures for reports: training curves, confusion matrices and reliability diagrams
(matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless machines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(history: list[dict], path: Path) -> None:
    """Accuracy and loss of both stages on one figure, the stage boundary marked."""
    if not history:
        return
    x = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(x, [h.get(key, np.nan) for h in history], "o-", label=f"train {key}")
        ax.plot(x, [h.get(f"val_{key}", np.nan) for h in history], "o-", label=f"val {key}")
        n1 = sum(1 for h in history if h["stage"] == 1)
        if 0 < n1 < len(history):
            ax.axvline(n1 + 0.5, color="gray", ls="--", label="stage 1 | stage 2")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(matrix: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    """Counts and row-normalised confusion matrix side by side."""
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, data, fmt, sub in (
        (axes[0], m, "{:.0f}", "counts"),
        (axes[1], norm, "{:.2f}", "row-normalised (recall)"),
    ):
        ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title}: {sub}")
        top = data.max() or 1
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(
                    j,
                    i,
                    fmt.format(data[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if data[i, j] > top / 2 else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reliability(curves: dict[str, dict], path: Path, title: str) -> None:
    """Reliability diagrams side by side, one per curve (``trainer.calibration.reliability``
    results, by name: "before", "after"): accuracy against mean confidence per bin, the
    diagonal being perfect calibration, each bin's share of the images below."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 5.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], curves.items(), strict=True):
        count = np.asarray(r["count"], float)
        bins = len(count)
        edges = np.linspace(0, 1, bins + 1)
        used = count > 0
        ax.plot([0, 1], [0, 1], ls="--", color="gray", label="perfectly calibrated")
        ax.bar(
            edges[:-1][used],
            np.asarray(r["accuracy"])[used],
            width=1 / bins,
            align="edge",
            edgecolor="black",
            alpha=0.7,
            label="accuracy in the bin",
        )
        conf = np.asarray(r["confidence"])[used]
        ax.plot(
            conf,
            np.asarray(r["accuracy"])[used],
            "o",
            color="C3",
            label="bin (mean confidence, accuracy)",
        )
        share = count / max(count.sum(), 1)
        ax.bar(edges[:-1], share * 0.25, width=1 / bins, align="edge", color="C2", alpha=0.4,
               label="share of images (x0.25)")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{title}: {name}, ECE {r['ece']:.3f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bar_counts(counts: dict[str, dict[str, int]], path: Path) -> None:
    """Images per class, one bar group per split."""
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(splits))
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, s in enumerate(splits):
        ax.bar(x + i * width, [counts[s][c] for c in classes], width, label=s)
    ax.set_xticks(x + width * (len(splits) - 1) / 2, classes)
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_grid(samples: dict[str, list[Path]], classes: list[str], path: Path) -> None:
    """A row of sample images per class."""
    from PIL import Image

    cols = max((len(v) for v in samples.values()), default=1) or 1
    fig, axes = plt.subplots(
        len(classes), cols, figsize=(1.6 * cols, 1.6 * len(classes)), squeeze=False
    )
    for r, c in enumerate(classes):
        for k in range(cols):
            ax = axes[r][k]
            ax.axis("off")
            if k < len(samples.get(c, [])):
                try:
                    with Image.open(samples[c][k]) as im:
                        ax.imshow(np.asarray(im.convert("L")), cmap="gray", vmin=0, vmax=255)
                except OSError:
                    pass
            if k == 0:
                ax.set_title(c, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def size_and_mode(sizes: dict[str, int], modes: dict[str, int], path: Path) -> None:
    """Bar charts of image sizes (most common) and colour modes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, data, title in (
        (axes[0], sizes, "image size (w x h)"),
        (axes[1], modes, "colour mode"),
    ):
        ax.bar(list(data), list(data.values()))
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
