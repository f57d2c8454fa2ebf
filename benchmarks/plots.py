"""Learning-curve plots: one line per sweep point, IQM with a 95% bootstrap band."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks import stats


def learning_curve(
    path: str,
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    statistic: str = "iqm",
    logy: bool = False,
) -> None:
    """Writes a PNG of `y[t, p, s]` against `x[t]`: a line per sweep point p over seeds s.

    Args:
      path: output PNG path.
      x: `[T]` x values (env steps, samples, iterations).
      y: `[T, P, S]` metric values; non-finite values are dropped per point.
      labels: P legend labels.
      xlabel, ylabel, title: axis labels and title.
      statistic: "iqm" or "mean" over seeds; the band is its 95% bootstrap interval.
      logy: log-scale y axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reduce = stats.iqm if statistic == "iqm" else np.mean
    y = np.asarray(y, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for p, label in enumerate(labels):
        yp = y[:, p, :]
        ok = np.all(np.isfinite(yp), axis=-1)
        if not ok.any():
            continue
        centre = reduce(yp[ok], axis=-1)
        low, high = stats.bootstrap_ci(yp[ok], reduce)
        (line,) = ax.plot(np.asarray(x)[ok], centre, label=label, lw=1.6)
        ax.fill_between(np.asarray(x)[ok], low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    note = f"({statistic.upper() if statistic == 'iqm' else statistic}, 95% CI)"
    # a long label gets its statistic on a second line rather than running off the figure
    ax.set_ylabel(f"{ylabel}\n{note}" if len(ylabel) > 30 else f"{ylabel} {note}")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(labels) > 1 or labels[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
