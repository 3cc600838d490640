"""The pictures people look at: per-class accuracy against training count, confusion matrix, sigma(x)
distribution, and the rho curve. matplotlib is imported only when a plot is drawn."""
from __future__ import annotations

import os

import numpy as np

from ltdeploy.errors import LtDeployError
from ltdeploy.files import atomic_path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise LtDeployError("plots need matplotlib: pip install 'ltdeploy[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    _pyplot().close(fig)
    return path


def per_class_accuracy(curves: dict[str, list[float | None]], counts: list[int], thresholds: tuple[int, int],
                       path: str, title: str = "", groups: tuple[str, str, str] = ("many", "medium", "few"),
                       unit: str = "training images", metric: str = "test top-1 (%)") -> str:
    """Per-class top-1 (y) of each model against the class's training images (x, log), as the paper's Fig. 1.

    Segmentation passes per-class IoU, pixel counts and head / body / tail as metric, unit and groups."""
    plt = _pyplot()
    order = np.argsort(-np.asarray(counts), kind="stable")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax2 = ax.twinx()
    ax2.bar(np.arange(len(order)), np.asarray(counts)[order], color="0.85", width=1.0, zorder=0)
    ax2.set_yscale("log")
    ax2.set_ylabel(unit)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    for name, acc in curves.items():
        a = np.array([np.nan if v is None else 100 * v for v in acc])[order]
        ax.plot(np.arange(len(order)), a, marker="o", ms=3, lw=1.2, label=f"{name} (mean {np.nanmean(a):.1f}%)")
    many, few = thresholds
    sorted_counts = np.asarray(counts)[order]
    for thr, label in ((many, f"{groups[0]} | {groups[1]}"), (few - 1, f"{groups[1]} | {groups[2]}")):
        idx = int(np.searchsorted(-sorted_counts, -thr, side="right"))
        ax.axvline(idx - 0.5, color="0.4", ls="--", lw=0.8)
        ax.text(idx - 0.4, 102, label, fontsize=7, color="0.3")
    ax.set_ylim(0, 108)
    ax.set_xlabel("classes, most to least frequent in training")
    ax.set_ylabel(metric)
    ax.set_title(title or f"per-class {metric.split(' (')[0]} against training frequency")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, counts: list[int], path: str, title: str = "") -> str:
    """Row-normalised confusion matrix, classes ordered from most to least frequent in training."""
    k = len(counts)
    m = np.zeros((k, k))
    np.add.at(m, (labels, pred), 1)
    return confusion_from_matrix(m, counts, path, title)


def confusion_from_matrix(matrix: np.ndarray, counts: list[int], path: str, title: str = "") -> str:
    """Draw a K x K count matrix (rows: truth) row-normalised, classes from most to least frequent."""
    plt = _pyplot()
    order = np.argsort(-np.asarray(counts), kind="stable")
    m = np.asarray(matrix, np.float64)[np.ix_(order, order)]
    m /= np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted class (by training frequency)")
    ax.set_ylabel("true class (by training frequency)")
    ax.set_title(title or "confusion matrix (rows sum to 1)")
    return _save(fig, path)


def sigma_distribution(sigma: np.ndarray, groups: list[str], labels: np.ndarray, path: str) -> str:
    """Histogram of DisAlign's confidence sigma(x) over the test set, split by the true class's group."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    g = np.asarray(groups)[labels]
    bins = np.linspace(0, 1, 41)
    for name in ("many", "medium", "few"):
        sel = sigma[g == name]
        if sel.size:
            ax.hist(sel, bins=bins, alpha=0.55, label=f"{name} (median {np.median(sel):.2f})")
    ax.set_xlabel("sigma(x)")
    ax.set_ylabel("test images")
    ax.set_title("DisAlign confidence over the test set")
    ax.legend(fontsize=8)
    return _save(fig, path)


def rho_curve(rhos: list[float], rows: dict[str, tuple[list[float], list[float]]], path: str) -> str:
    """Top-1 (mean ± std over seeds) against the G-RW scale rho, one line per metric."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, (mean, std) in rows.items():
        mean, std = np.asarray(mean) * 100, np.asarray(std) * 100
        ax.errorbar(rhos, mean, yerr=std, marker="o", capsize=3, label=name)
    ax.axvline(1.0, color="0.5", ls=":", lw=0.8)
    ax.set_xlabel("rho (0: instance-balanced, 1: class-balanced)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("DisAlign against the generalized re-weighting scale")
    ax.legend(fontsize=8)
    return _save(fig, path)


def per_class_change(runs: list, folder: str) -> str:
    """Each engine's per-class change against the first engine (points, y) over the class's training count
    (x, log), coloured by frequency group: where compression or calibration costs the rare classes. With one
    engine, its per-class values instead."""
    plt = _pyplot()
    base = runs[0][1]
    desc = base.description
    scale = 1.0 if base.percent else 100.0
    counts = np.asarray(desc.class_counts, np.float64)
    groups = np.asarray(desc.groups)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    others = runs[1:] or runs[:1]
    markers = "osD^v<>"
    for j, (name, s) in enumerate(others):
        vals = np.array([np.nan if v is None else v for v in s.per_class], np.float64) * scale
        ref = np.array([np.nan if v is None else v for v in base.per_class], np.float64) * scale
        y = vals - ref if runs[1:] else vals
        for g, colour in zip(desc.group_names, ("tab:blue", "tab:orange", "tab:red")):
            sel = (groups == g) & ~np.isnan(y)
            ax.scatter(counts[sel], y[sel], s=18, marker=markers[j % len(markers)], color=colour, alpha=0.8,
                       label=f"{name}: {g}")
    ax.set_xscale("log")
    if runs[1:]:
        ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xlabel(f"training count per class ({task_unit(desc.task)})")
    label = f"{base.per_class_metric} (%)"
    ax.set_ylabel(f"change in {label} vs {runs[0][0]}" if runs[1:] else label)
    ax.set_title(f"{base.split}: per-class {base.per_class_metric}" + (" change" if runs[1:] else ""))
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, os.path.join(folder, "per_class_change.png"))


def task_unit(task: str) -> str:
    """What a task's class counts count."""
    from ltdeploy.tasks import task_spec
    return task_spec(task).count_unit
