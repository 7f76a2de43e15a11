"""``--plot``: one small bar chart per case, llmos beside each peer measured in the same run.

Cases have different units (calls/s, ms, GB/s), so each gets its own axes; an
axis goes logarithmic when its bars differ by more than ``LOG_SPREAD`` times.
matplotlib is optional (``pip install llmos-actors[plot]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: Bars further apart than this factor get a log scale.
LOG_SPREAD = 20.0
OURS_COLOR = "#c0392b"
PEER_COLOR = "#7f8c8d"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _label(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1e6:.3g}M"
    if v >= 1000:
        return f"{v / 1000:,.0f}k" if v >= 10_000 else f"{v / 1000:.1f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.2g}"


def _ratio(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.2g}"


def write_plot(doc: dict[str, Any], path: str | Path) -> Path:
    """Draw ``doc`` (a ``report.build_doc`` document) into the PNG ``path``.

    Raises:
        PlotUnavailable: matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError as exc:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'llmos-actors[plot]'") from exc

    drawn = [c for c in doc["cases"] if c["llmos"]["status"] == "ok"]
    missing = [c for c in doc["cases"] if c["llmos"]["status"] != "ok"]
    ncols = min(4, max(1, len(drawn)))
    nrows = max(1, math.ceil(len(drawn) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows + 1.0), squeeze=False)
    for ax in axes.flat[len(drawn) :]:
        ax.axis("off")
    for ax, case in zip(axes.flat, drawn, strict=False):
        bars = [case["llmos"]] + [p for p in case["peers"] if p["status"] == "ok"]
        names = [b["who"] for b in bars[:1]] + [
            b["who"] + (f"\nllmos {_ratio(adv)}x" if (adv := b.get("llmos_advantage")) else "") for b in bars[1:]
        ]
        values = [b["value"] for b in bars]
        colors = [OURS_COLOR] + [PEER_COLOR] * (len(bars) - 1)
        ax.bar(range(len(bars)), values, color=colors)
        if min(values) > 0 and max(values) / min(values) > LOG_SPREAD:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _label(v)))
        for i, v in enumerate(values):
            ax.annotate(_label(v), (i, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(bars)))
        crowded = len(bars) > 3  # long peer names: steeper and smaller so they do not overlap
        ax.set_xticklabels(names, rotation=40 if crowded else 20, ha="right", fontsize=6 if crowded else 7)
        better = "higher is better" if case["higher_is_better"] else "lower is better"
        stat = "" if case["stat"] == "median" else f" ({case['stat']})"
        ax.set_title(f"{case['name']}", fontsize=9)
        ax.set_ylabel(f"{case['unit']}{stat}, {better}", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(y=0.15)
    m = doc["machine"]
    load = doc.get("load_average") or {}
    busy = f"; 1-min load average {load['start']:.1f} at start" if load else ""
    fig.suptitle(
        f"llmos bench, {doc['date']}: {m['nproc']} cores ({m['cpu_model']}), {m['mem_gib']} GiB, "
        f"Python {m['python']}{', Ray ' + doc['settings']['ray'] if doc['settings'].get('ray') else ''}"
        f"{' (quick run)' if doc['settings']['quick'] else ''}{busy}",
        fontsize=10,
    )
    if missing:
        left_out = ", ".join(c["name"] for c in missing)
        fig.text(0.01, 0.005, f"not measured in this run: {left_out}", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
