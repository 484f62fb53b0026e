"""loss.png: the loss per step, drawn with matplotlib when the `plot` extra is installed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunespec.report.document import losses

MISSING = "matplotlib is not installed (pip install 'tunespec[plot]' draws it)"


def plot_available() -> bool:
    """Whether matplotlib can be imported (it is an optional extra, kept out of the light install)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_loss_png(report: Mapping[str, Any], path: Path) -> Path | None:
    """Draw the report's loss curve into PATH; None when there is no loss to draw."""
    points = losses(report)
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in points], [p[1] for p in points], color="#1f77b4", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("mean loss")
    ax.set_title(f"{report['job']['name']}: {report['tuned_model']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path
