"""Figures of the data-preprocessing study (:mod:`jaxcnn.studies.preprocessing`).

Every ``plot_*`` takes arrays or the study's results and an optional PNG ``path``; it returns the
matplotlib figure (closed after saving when ``path`` is given).
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from jaxcnn.data import preprocessing



def _plt():
  import matplotlib
  if "MPLBACKEND" not in os.environ and "inline" not in matplotlib.get_backend():
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str | None, dpi: int):
  if path:
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
  return fig


def plot_zigzag(zig: dict[str, Any], w_star: Sequence[float], path: str | None = None,
                dpi: int = 100):
  """Loss contours of the 2-D neuron with the SGD (batch 1) and GD paths, per input set."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(zig), figsize=(5.2 * len(zig), 4.8))
  for ax, (name, res) in zip(np.atleast_1d(axes), zig.items()):
    x = res["x"]
    pts = np.concatenate([res["sgd"]["path"], res["gd"]["path"], [w_star]])
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    lo, hi = pts.min(0) - 0.3, pts.max(0) + 0.3
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120))
    w = np.stack([g0.ravel(), g1.ravel()], 1)
    loss = 0.5 * np.mean((w @ x.T - (x @ np.asarray(w_star))) ** 2, axis=1).reshape(g0.shape)
    ax.contour(g0, g1, loss, levels=np.geomspace(loss.min() + 1e-4, loss.max(), 12),
               colors="0.75", linewidths=0.8)
    sgd, gd = res["sgd"]["path"], res["gd"]["path"]
    ax.plot(sgd[:, 0], sgd[:, 1], "-o", ms=2.5, lw=1.0, color="tab:red",
            label=f"SGD, batch 1, lr {res['sgd']['best_lr']:.3g}")
    ax.plot(gd[:, 0], gd[:, 1], "-s", ms=2.5, lw=1.0, color="tab:blue",
            label=f"full-batch GD, lr {res['gd']['best_lr']:.3g}")
    ax.plot(*w_star, "k*", ms=12, label="w* (target)")
    ax.plot(*sgd[0], "ko", ms=5)
    ax.set_title(f"{name} inputs: {100 * res['same_sign_fraction']:.0f}% of per-example\n"
                 f"gradients have one sign in both components", fontsize=10)
    ax.set_xlabel("w1")
    ax.set_ylabel("w2")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="upper right")
  fig.suptitle("A 2-D linear neuron: dL/dw_i = upstream * x_i (each method at its best lr)")
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_data_clouds(x: np.ndarray, specs: Sequence[str], path: str | None = None,
                     dpi: int = 100):
  """The lecture's figure: a 2-D cloud after each transform ``fit(spec, x)``."""
  plt = _plt()
  fig, axes = plt.subplots(1, len(specs), figsize=(3.0 * len(specs), 3.2))
  clouds = [np.asarray(preprocessing.fit(spec, x)(x)) for spec in specs]
  lim = max(float(np.abs(c).max()) for c in clouds) * 1.05
  for ax, spec, c in zip(np.atleast_1d(axes), specs, clouds):
    ax.scatter(c[:, 0], c[:, 1], s=3, alpha=0.5)
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    cov = np.cov(c.T)
    ax.set_title(f"{spec}\nmean ({c[:, 0].mean():.1f}, {c[:, 1].mean():.1f}), "
                 f"corr {cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]):.2f}", fontsize=8)
  fig.tight_layout()
  return _save(fig, path, dpi)


def _montage(imgs: np.ndarray, pad: int = 1) -> np.ndarray:
  """Images ``(n, H, W, C)`` side by side, each min-max scaled to [0, 1], on a white gap."""
  n, h, w, c = imgs.shape
  out = np.ones((h, n * (w + pad) - pad, c))
  for i, img in enumerate(imgs):
    img = img - img.min()
    out[:, i * (w + pad):i * (w + pad) + w] = img / max(float(img.max()), 1e-12)
  return out[..., 0] if c == 1 else out


def plot_transformed_images(rows: dict[str, np.ndarray], path: str | None = None,
                            dpi: int = 100):
  """One row per entry (name -> images ``(n, H, W, C)``), each image min-max scaled."""
  plt = _plt()
  n = max(len(v) for v in rows.values())
  fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * n + 1.5, 1.15 * len(rows)),
                           squeeze=False)
  for ax, (name, imgs) in zip(axes[:, 0], rows.items()):
    ax.imshow(_montage(np.asarray(imgs)), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(name, loc="left", fontsize=8)
  fig.suptitle("each image min-max scaled for display", fontsize=8)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_spectra(spectra: dict[str, np.ndarray], path: str | None = None, dpi: int = 100):
  """Eigenvalues of E[x x^T] per transform, descending, log scale."""
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name, eig in spectra.items():
    ax.plot(np.arange(1, len(eig) + 1), np.maximum(eig, 1e-10), label=name)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("eigenvalue index")
  ax.set_ylabel("eigenvalue of E[x x^T]")
  ax.set_title("Second moment of the preprocessed inputs: with the bias's constant 1\n"
               "appended, K x the Hessian of a K-class linear softmax classifier at W = 0",
               fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_curves(curves: dict[str, dict[str, dict[str, Any]]], targets: dict[str, float],
                path: str | None = None, dpi: int = 100):
  """Training loss (fixed train subset) against step at each transform's best learning rate."""
  plt = _plt()
  models = list(next(iter(curves.values())))
  fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
  for ax, m in zip(axes[0], models):
    for name, per_model in curves.items():
      r = per_model[m]
      ax.plot(r["steps"], r["train_loss"], label=f"{name} (lr {r['lr']:g})")
    ax.axhline(targets[m], color="k", ls="--", lw=0.8, label=f"target {targets[m]:g}")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{m}: each preprocessing at its best learning rate", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)


def plot_lr_sweep(sweeps: dict[str, dict[str, dict[str, Any]]], path: str | None = None,
                  dpi: int = 100):
  """Final training loss against learning rate per transform; diverged runs drawn as x at top."""
  plt = _plt()
  models = list(next(iter(sweeps.values())))
  fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
  for ax, m in zip(axes[0], models):
    cap = 2 * math.log(10)
    for name, per_model in sweeps.items():
      lrs, final = per_model[m]["lrs"], np.asarray(per_model[m]["final_loss"], np.float64)
      ok = np.isfinite(final) & (final < cap)
      line, = ax.plot(lrs, np.where(ok, final, np.nan), "-o", ms=3, label=name)
      ax.plot(np.asarray(lrs)[~ok], np.full((~ok).sum(), cap), "x", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final training loss")
    ax.set_title(f"{m}: x = diverged or above {cap:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return _save(fig, path, dpi)
