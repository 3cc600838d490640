"""The stage-2 fits on cached features, in numpy: the same methods, losses, sampling and schedule as
`train.py stage2` (training/core/methods.py; SGD with momentum 0.9, weight decay and a per-step cosine, its
gradients written out here by hand). Each fit gives a `Calibration`: what it does to (features, logits) in
numpy, and the parameters `fold` writes into the graph.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from ltdeploy.calibrate.algebra import ncm_rows, plain_rows
from ltdeploy.calibrate.grw import grw_weights, log_prior
from ltdeploy.calibrate.settings import METHODS, FitSettings
from ltdeploy.classify import softmax

TAU_GRID = [round(0.1 * i, 1) for i in range(21)]  # tau-norm's search range, 0 .. 2
EPS = 1e-12


@dataclass
class Calibration:
    """A fitted calibration. `form`: "plain" (new classifier weight and bias), "ncm" (centre, normalise, then a
    plain classifier plus a shift), "affine" (DisAlign: alpha, beta and sigma(x) = sigmoid(v . x + c))."""

    method: str
    form: str
    params: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)

    @classmethod
    def unchanged(cls, weight: np.ndarray, bias: np.ndarray) -> "Calibration":
        """The original classifier itself (`--method none`, and the "before" of every comparison)."""
        return cls("none", "plain", {"weight": weight, "bias": bias})

    def apply(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Calibrated logits (N, K) from features x (N, d) and the original logits z (N, K)."""
        p = self.params
        x64 = x.astype(np.float64)
        if self.form == "plain":
            return (x64 @ p["weight"].T.astype(np.float64) + p["bias"]).astype(np.float32)
        if self.form == "ncm":
            c = x64 - p["center"]
            c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), EPS)
            return (c @ p["weight"].T.astype(np.float64) + p["bias"]).astype(np.float32)
        s = _sigmoid(x64 @ p["v"].astype(np.float64) + float(p["c"].reshape(-1)[0]))[:, None]
        z64 = z.astype(np.float64)
        return (z64 + s * ((p["alpha"] - 1) * z64 + p["beta"])).astype(np.float32)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * t))  # stable for any t


def weighted_ce_grad(logits: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, np.ndarray]:
    """L = (1/N) sum_i w_{y_i} CE_i (the G-RW loss; all ones: plain CE) and dL/dlogits."""
    n = len(y)
    p = softmax(logits)  # float64
    w = weight[y].astype(np.float64)
    loss = float(-(w * np.log(np.maximum(p[np.arange(n), y], 1e-300))).sum() / n)
    p[np.arange(n), y] -= 1
    return loss, p * (w / n)[:, None]


class _Model:
    """Parameters, their forward pass and gradients for one trained method."""

    def __init__(self, params: dict[str, np.ndarray], trainable: tuple[str, ...],
                 forward: Callable, backward: Callable) -> None:
        self.params, self.trainable, self.forward, self.backward = params, trainable, forward, backward


def _disalign(d: int, k: int, learn_alpha: bool, learn_beta: bool) -> _Model:
    params = {"alpha": np.ones(k), "beta": np.zeros(k), "v": np.zeros(d), "c": np.zeros(1)}

    def forward(x, z):
        s = _sigmoid(x @ params["v"] + params["c"][0])[:, None]
        u = (params["alpha"] - 1) * z + params["beta"]
        return z + s * u, (s, u)

    def backward(x, z, cache, g):
        s, u = cache
        ds = (g * u).sum(1, keepdims=True) * s * (1 - s)
        return {"alpha": (g * s * z).sum(0), "beta": (g * s).sum(0), "v": (ds * x).sum(0), "c": ds.sum(0)}
    names = ("v", "c") + (("alpha",) if learn_alpha else ()) + (("beta",) if learn_beta else ())
    return _Model(params, names, forward, backward)


def _lws(k: int) -> _Model:
    params = {"scale": np.ones(k)}
    return _Model(params, ("scale",), lambda x, z: (params["scale"] * z, None),
                  lambda x, z, cache, g: {"scale": (g * z).sum(0)})


def _linear(d: int, k: int, rng: np.random.Generator) -> _Model:
    bound = 1 / np.sqrt(d)  # nn.Linear's initialisation
    params = {"weight": rng.uniform(-bound, bound, (k, d)), "bias": rng.uniform(-bound, bound, k)}
    return _Model(params, ("weight", "bias"), lambda x, z: (x @ params["weight"].T + params["bias"], None),
                  lambda x, z, cache, g: {"weight": g.T @ x, "bias": g.sum(0)})


def epoch_order(labels: np.ndarray, counts: list[int], balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """One epoch's sample order: a permutation (instance sampling) or N draws with replacement, each class
    equally likely (class-balanced)."""
    n = len(labels)
    if not balanced:
        return rng.permutation(n)
    p = 1.0 / np.asarray(counts, np.float64)[labels]
    return rng.choice(n, n, replace=True, p=p / p.sum())


def _batch_grads(model: _Model, x: np.ndarray, z: np.ndarray, y: np.ndarray, weight: np.ndarray, idx: np.ndarray,
                 mixing: tuple[np.ndarray, ...] | None) -> tuple[float, dict]:
    """The loss of samples `idx` and its gradients. Pixels mix their cells' calibrated logits, each cell
    calibrated once however many pixels read it, and send each cell its share of the gradient back."""
    if mixing is None:
        xb, zb = x[idx], z[idx]
        out, cache = model.forward(xb, zb)
        loss, g = weighted_ce_grad(out, y[idx], weight)
        return loss, model.backward(xb, zb, cache, g)
    taps, w = mixing[0][idx], mixing[1][idx][..., None]
    flat = taps.reshape(-1)
    order = np.argsort(flat, kind="stable")  # one sort finds the cells and groups their pixels' gradients
    first = np.r_[True, flat[order][1:] != flat[order][:-1]]
    where = np.empty_like(flat)
    where[order] = np.cumsum(first) - 1
    xb, zb = x[flat[order][first]], z[flat[order][first]]
    out, cache = model.forward(xb, zb)
    loss, g = weighted_ce_grad((out[where.reshape(taps.shape)] * w).sum(1), y[idx], weight)
    g = np.add.reduceat((g[:, None] * w).reshape(-1, g.shape[1])[order], np.flatnonzero(first), axis=0)
    return loss, model.backward(xb, zb, cache, g)


def sgd(model: _Model, x: np.ndarray, z: np.ndarray, y: np.ndarray, weight: np.ndarray, s: FitSettings,
        epochs: Iterator[np.ndarray], steps: int, desc: str, mixing: tuple[np.ndarray, ...] | None = None
        ) -> dict:
    """torch.optim.SGD (momentum 0.9, weight decay) under a per-step cosine from lr to 0 over `steps`, on the
    batches of each epoch order `epochs` yields (pixels through their cells' `mixing`)."""
    buf: dict[str, np.ndarray] = {}
    step, log, start = 0, [], time.perf_counter()
    bar = tqdm(range(s.epochs), desc=desc, unit="epoch", leave=False)
    for epoch in bar:
        order, loss_sum = next(epochs), 0.0
        for i in range(0, len(order), s.batch_size):
            idx = order[i:i + s.batch_size]
            loss, grads = _batch_grads(model, x, z, y, weight, idx, mixing)
            lr = s.lr * 0.5 * (1 + np.cos(np.pi * step / max(1, steps)))
            for name in model.trainable:
                d_p = grads[name] + s.wd * model.params[name]
                buf[name] = d_p.copy() if name not in buf else 0.9 * buf[name] + d_p
                model.params[name] -= lr * buf[name]
            step += 1
            loss_sum += loss * len(idx)
        log.append({"epoch": epoch + 1, "loss": loss_sum / len(order)})
        bar.set_postfix(loss=f"{log[-1]['loss']:.4f}", refresh=False)
    return {"epochs": log, "seconds": round(time.perf_counter() - start, 2)}


def _epochs(labels: np.ndarray, counts: list[int], balanced: bool, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:
        yield epoch_order(labels, counts, balanced, rng)


def _image_epochs(starts: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """Pixels image by image, the images shuffled each epoch: a batch holds whole images' pixels, as
    train.py stage2 batches a segmenter's images (and their cells are shared by many of the batch's pixels)."""
    rng = np.random.default_rng(seed)
    while True:
        yield np.concatenate([np.arange(starts[i], starts[i + 1]) for i in rng.permutation(len(starts) - 1)])


def balanced_top1(pred: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes present of their top-1."""
    return float(np.mean([(pred[labels == c] == c).mean() for c in np.unique(labels)]))


def fit(method: str, train: tuple[np.ndarray, np.ndarray, np.ndarray], counts: list[int],
        classifier: tuple[np.ndarray, np.ndarray], s: FitSettings,
        val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        epochs: Iterator[np.ndarray] | None = None,
        mixing: tuple[np.ndarray, ...] | None = None) -> Calibration:
    """Fit `method` on the training features, logits and labels (x, z, y) with the original classifier
    (W (K, d), b); tau-norm picks tau on `val`. `epochs` overrides the sampling (tests feed both fits one order);
    `mixing` (taps, weights, each image's first pixel; cache.Cached) makes the samples pixels of the rows' cells."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if mixing is not None and method in ("tau-norm", "ncm"):
        raise ValueError(f"{method} fits classifiers' samples, not pixels")
    x, z, y = (np.asarray(a) for a in train)  # as cached (float32); each batch computes in float64
    w0, b0 = (np.asarray(a, np.float64) for a in classifier)
    k, d = w0.shape
    if method == "logit-adjust":
        w, b = plain_rows(w0, b0, shift=-s.tau * log_prior(counts))
        return Calibration(method, "plain", {"weight": w, "bias": b}, {"tau": s.tau})
    if method == "tau-norm":
        return _tau_norm(w0, val)
    if method == "ncm":
        return _ncm(np.asarray(x, np.float64), y, k)
    balanced = method in ("lws", "crt")
    weight = np.ones(k) if balanced else grw_weights(counts, s.rho).astype(np.float64)
    steps_per_epoch = -(-len(y) // s.batch_size)
    s = FitSettings(**{**s.__dict__, "epochs": max(s.epochs, -(-s.min_steps // steps_per_epoch))})
    rng = np.random.default_rng(s.seed)
    model = _lws(k) if method == "lws" else _linear(d, k, rng) if method in ("crt", "grw-classifier") else \
        _disalign(d, k, method != "disalign-margin", method != "disalign-magnitude")
    if epochs is None:
        epochs = _epochs(y, counts, balanced, s.seed) if mixing is None else _image_epochs(mixing[2], s.seed)
    log = sgd(model, x, z, y, weight, s, epochs,
              s.epochs * steps_per_epoch, f"fit {method}", mixing)
    info = {"sampling": "class-balanced" if balanced else "instance", "epochs": s.epochs, "log": log}
    if not balanced:
        info["rho"] = s.rho
    p = model.params
    if method == "lws":
        w, b = plain_rows(w0, b0, scale=p["scale"])
        return Calibration(method, "plain", {"weight": w, "bias": b}, info)
    if method in ("crt", "grw-classifier"):
        return Calibration(method, "plain", {"weight": p["weight"], "bias": p["bias"]}, info)
    return Calibration(method, "affine", {"alpha": p["alpha"], "beta": p["beta"], "v": p["v"], "c": p["c"]}, info)


def _tau_norm(w0: np.ndarray, val) -> Calibration:
    """w_j / |w_j|^tau, the bias dropped, tau chosen by val's balanced top-1 (ties: the smaller tau)."""
    if val is None:
        raise ValueError("tau-norm chooses tau on the val split")
    x, _, y = val
    norms = np.maximum(np.linalg.norm(w0, axis=1, keepdims=True), EPS)
    scores = {tau: balanced_top1((np.asarray(x, np.float64) @ (w0 / norms ** tau).T).argmax(1), y) for tau in TAU_GRID}
    best = max(TAU_GRID, key=lambda t: (scores[t], -t))
    return Calibration("tau-norm", "plain", {"weight": w0 / norms ** best, "bias": np.zeros(len(w0))},
                       {"tau": best, "val_top1_by_tau": scores})


def _ncm(x: np.ndarray, y: np.ndarray, k: int) -> Calibration:
    """Centre on the training mean, normalise; score_j = 2 mu_j . x - |mu_j|^2 - 1 (= -|x - mu_j|^2)."""
    center = x.mean(0)
    c = x - center
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), EPS)
    means = np.zeros((k, x.shape[1]))
    for j in range(k):
        if (y == j).any():
            means[j] = c[y == j].mean(0)
    weight, bias = ncm_rows(means)
    return Calibration("ncm", "ncm", {"center": center, "weight": weight, "bias": bias},
                       {"classes_with_means": int((np.abs(means).sum(1) > 0).sum())})
