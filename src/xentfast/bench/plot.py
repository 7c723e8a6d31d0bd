"""Throughput against the class count (``--plot``, needs matplotlib)."""
from __future__ import annotations

import math

from .problem import SWEEP_ELEMENTS, sweep_shapes


_PLOT_LINES = (  # key, label, matplotlib style
    ("bound-stream", "bound: read + streaming write (xentfast's C pass)",
     {"color": "black", "linestyle": "-", "linewidth": 2.5}),
    ("copy", "copy: np.multiply(x, 2, out=y)",
     {"color": "black", "linestyle": "--", "linewidth": 1.5}),
    ("xentfast-out", "xentfast loss+grad (out= reused buffer)",
     {"color": "C3", "linewidth": 2.5, "marker": "o"}),
    ("xentfast-inplace", "xentfast loss+grad (out=logits, in place)",
     {"color": "C3", "linewidth": 1, "linestyle": ":", "marker": "."}),
    ("numpy", "NumPy", {"color": "C0", "marker": "s"}),
    ("torch-eager", "PyTorch eager", {"color": "C1", "marker": "^"}),
    ("torch-compile", "torch.compile", {"color": "C2", "marker": "v"}),
    ("jax-jit", "JAX jit", {"color": "C4", "marker": "D"}),
    ("sklearn", "scikit-learn", {"color": "C5", "marker": "x"}),
)


def _matplotlib():
    """pyplot with a file-only backend, or an ImportError that says what to install."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib, which is not installed: "
                          "pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_throughput(reports: list, path: str, min_rows: int = 64,
                    min_elements: int = 2**16) -> None:
    """Throughput (G elements/s) against C, log-log, one line per method.

    From the core `reports` of at least `min_rows` rows and `min_elements`
    elements (few huge rows and tiny calls are other questions);
    :func:`sweep_shapes` results, if any, in a second panel.  Saved to `path`.
    """
    plt = _matplotlib()
    sweep = {tuple(s) for s in sweep_shapes()}
    main_shapes = [r for r in reports if tuple(r["info"]["shape"]) not in sweep
             and r["info"]["shape"][0] >= min_rows
             and r["info"]["shape"][0] * r["info"]["shape"][1] >= min_elements]
    swept = [r for r in reports if tuple(r["info"]["shape"]) in sweep]
    panels = [(f"shapes with N >= {min_rows} rows", main_shapes),
              (f"N x C = 2^{round(math.log2(SWEEP_ELEMENTS))} elements", swept)]
    panels = [p for p in panels if p[1]] or [("every shape run", reports)]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9.0, 7.5 * len(panels)), 6.8),
                             squeeze=False)
    for ax, (title, reps) in zip(axes[0], panels):
        reps = sorted(reps, key=lambda r: r["info"]["shape"][1])
        for key, label, style in _PLOT_LINES:
            points = [(r["info"]["shape"][1], row["gelem_per_s"]) for r in reps
                      for row in r["results"] if row["key"] == key and row["gelem_per_s"]]
            if points:
                ax.plot(*zip(*points), label=label, **style)
        cs = [r["info"]["shape"][1] for r in reps]
        ax.set_xscale("log")
        ax.set_yscale("log")
        labels, lowered = [], False
        for i, (c, r) in enumerate(zip(cs, reps)):
            label = f"{c}\nN={r['info']['shape'][0]}"
            # too close to its left neighbour's label (not lowered): lower it
            lowered = i > 0 and c < 4 * cs[i - 1] and not lowered
            labels.append("\n\n" + label if lowered else label)
        ax.set_xticks(cs, labels, fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("classes C (rows N)")
        ax.set_ylabel("G elements/s  (N*C / time of loss+grad)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=4 if len(panels) > 1 else 3, fontsize=9, frameon=False)
    info = reports[0]["info"]
    fig.suptitle(
        f"Softmax cross-entropy loss + gradient, {info['dtype']}: throughput against C\n"
        f"{info['cpu']}, {info['threads']} threads, xentfast {info['xentfast']} "
        f"({info['backend']}), {info['date'][:10]}", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)

