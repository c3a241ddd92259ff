"""The pictures the commands draw: the imagination grid, the noise histogram and QQ plot, the
training curve. (The calibration figure lives with the calibration, :mod:`spinemu.host.calibration`.)
"""

from pathlib import Path

import numpy as np
from scipy.stats import norm

from spinemu.hdl.memory_map import job_inputs
from spinemu.hdl.noise_table import BINS_PER_SIGMA

from .imagination import target
from .jobs import job_seed, reconstruct_images
from .occlusion import OCCLUSIONS

__all__ = ["draw_grid", "plot_noise", "plot_curve"]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed); imported late, as it
    is slow to import."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw_grid(path, dataset, report, arrays, runner, *, seed, images=10, samples=4):
    """Write the figure of a benchmark run (``report`` and ``arrays`` from
    :func:`~spinemu.host.imagination.evaluate`) to ``path``.

    Rows: original, occluded, ``samples`` single-sample imaginations run on ``runner`` (sample i
    runs with the job seeds of run seed ``seed + i``, so the first is the first sample of the
    benchmark's run), the mean reconstruction of S samples. Columns: the first test image of each
    class, then the next ones, ``images`` in all."""
    plt = _pyplot()

    labels, top = arrays["labels"], dataset.max_value
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    rest = [k for k in range(len(labels)) if k not in firsts]
    chosen = (firsts + rest)[:images]
    pics = dataset.images[arrays["indices"][chosen]]
    masks = arrays["mask"][chosen]
    inputs = job_inputs(pics, masks)
    rows = [("original", pics / top, None), ("occluded", pics / top, masks)]
    for i in range(samples):
        seeds = [job_seed(seed + i, k) for k in chosen]
        counts = runner.run(inputs, seeds, 1).counts
        rows.append((f"sample {i + 1}", reconstruct_images(pics, masks, counts, 1, top), None))
    rows.append((f"mean of {report['samples']}", arrays["reconstructed"][chosen], None))
    fig, axes = plt.subplots(len(rows), len(chosen), squeeze=False,
                             figsize=(0.9 * len(chosen) + 1.2, 0.9 * len(rows) + 0.6))
    for r, (name, pictures, hide) in enumerate(rows):
        for c in range(len(chosen)):
            ax = axes[r][c]
            grey = np.clip(pictures[c], 0, 1)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            if hide is not None:
                rgb[hide[c] == 0] = (0.25, 0.45, 0.85)
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0:
                ax.set_title(dataset.classes[labels[chosen[c]]], fontsize=8)
    acc = report["accuracy"]
    fig.suptitle(f"{report['occlusion']} occluded, {target(report)}: reconstructed accuracy "
                 f"{acc['reconstructed']:.1%} (zero-filled {acc['zero_filled']:.1%})", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_noise(codes, sigma, path):
    """Histogram (log scale, with the normal density) and normal QQ plot of ``codes / sigma``."""
    plt = _pyplot()

    z = codes.reshape(-1) / sigma
    fig, (hist, qq) = plt.subplots(1, 2, figsize=(11, 4.2))
    step = 1 / BINS_PER_SIGMA  # the method's own bins
    edges = np.arange(-6, 6 + step / 2, step)
    counts, _ = np.histogram(z, edges)
    hist.semilogy((edges[:-1] + edges[1:]) / 2, counts / z.size / step, ".", ms=3,
                  label="emulated noise")
    grid = np.linspace(-6, 6, 601)
    hist.semilogy(grid, norm.pdf(grid), "k-", lw=0.8, label="N(0, 1)")
    hist.set(xlabel="z = code / sigma", ylabel="density", title=f"{z.size:,} samples",
             ylim=(0.5 / z.size / step, 1))
    hist.legend()
    # Quantiles evenly spaced in z, so the tails get as many points as the centre.
    reach = norm.isf(10 / z.size)
    probs = norm.cdf(np.linspace(-reach, reach, 201))
    qq.plot(norm.ppf(probs), np.quantile(z, probs), ".", ms=3, label="quantiles")
    qq.plot([-reach, reach], [-reach, reach], "k-", lw=0.8, label="y = x")
    qq.set(xlabel="normal quantile", ylabel="noise quantile", title="normal QQ plot")
    qq.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curve(history, path, title=""):
    """The training curve: loss per epoch (all pixels, weighted as trained) and the hidden pixels'
    cross-entropy per occlusion kind, with the quantization-aware epochs shaded."""
    plt = _pyplot()

    loss = np.asarray(history["loss"])
    epochs = np.arange(1, len(loss) + 1)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(epochs, loss, color="black", lw=2, label="training loss (weighted BCE)")
    by_kind = np.asarray(history["loss_by_kind"])
    for k, kind in enumerate(OCCLUSIONS):
        ax.plot(epochs, by_kind[:, k], lw=0.8, alpha=0.8, label=f"hidden-pixel BCE, {kind}")
    qat = int(history["qat_from"])
    if qat < len(loss):
        ax.axvspan(qat + 0.5, len(loss) + 0.5, color="tab:orange", alpha=0.12,
                   label="quantization-aware (integer weights)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy per pixel")
    ax.set_title(title or "training (training split only)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
