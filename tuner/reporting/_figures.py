"""The report's figures, drawn with matplotlib's object API on the Agg canvas and saved as PNG.

Each function takes plain numbers (``_report`` decides what they are) and writes one PNG. ``Figure`` objects are
made directly, never through ``pyplot``: no global figure state and no GUI backend, so a report can be written from
a notebook, a server or a worker process alike. Optuna's own matplotlib plots are not used: they read the study
as stored (replays and pruned trials in or out by Optuna's rules, the study's directions), while the report draws the
records by cnntune's rules (baselines labelled, replays out, pruned and failed trials marked, the Pareto front by
accuracy up and size down whatever the study's directions). Nothing here imports Keras.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Sequence

__all__ = ["by_value", "comparison", "curves", "history", "importance", "pareto"]

BEST, BASE, OTHER, PRUNED, FAILED = "#1b7837", "#2166ac", "#9e9e9e", "#f28e2b", "#d62728"
DPI = 100


def _figure(width: float, height: float, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI)


def comparison(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Validation and test accuracy (%) of each baseline and the best trial, the study's reported figure marked.

    Args:
        rows: ``label``, ``val``, ``test``, ``reported`` (percent or ``None``), optional ``val_sd``/``test_sd``.
    """
    fig, (ax,) = _figure(max(5.0, 1.3 * len(rows) + 2), 3.8)
    xs = range(len(rows))
    width = 0.38
    for offset, key, colour, label in ((-width / 2, "val", BASE, "validation"), (width / 2, "test", BEST, "test")):
        values = [r.get(key) or 0.0 for r in rows]
        errors = [r.get(f"{key}_sd") or 0.0 for r in rows]
        bars = ax.bar([x + offset for x in xs], values, width, yerr=errors if any(errors) else None, capsize=3,
                      color=colour, alpha=0.85, label=label)
        ax.bar_label(bars, labels=[f"{v:.1f}" if r.get(key) is not None else "-" for v, r in zip(values, rows)],
                     fontsize=7, padding=2)
    reported = [(x, r["reported"]) for x, r in zip(xs, rows) if r.get("reported") is not None]
    if reported:
        ax.scatter([x + width / 2 for x, _ in reported], [v for _, v in reported], marker="_", s=400, color="k",
                   zorder=3, label="study reported (test)")
    ax.set_xticks(list(xs), [r["label"] for r in rows], rotation=20 if len(rows) > 4 else 0, ha="right"
                  if len(rows) > 4 else "center", fontsize=8)
    top = max([r.get(k) or 0.0 for r in rows for k in ("val", "test", "reported")] + [1.0])
    ax.set_ylim(0, top * 1.22)  # room for the legend above the bars
    ax.set_ylabel("accuracy (%)")
    ax.set_title("baselines vs best (measured in this study)")
    ax.legend(fontsize=8, loc="upper left", ncols=3)
    _save(fig, path)


def curves(series: Sequence[tuple[str, dict[str, list[float]]]], path: Path) -> None:
    """Loss and accuracy per epoch, training (dashed) vs validation (solid), one colour per trial.

    Args:
        series: ``(label, history)``; the first is the best trial (drawn thicker).
    """
    fig, (loss_ax, acc_ax) = _figure(10, 3.8, ncols=2)
    colours = [BEST, BASE, "#762a83", "#e08214", "#35978f", "#c51b7d", "#4d4d4d", "#8c510a", "#01665e", "#b2182b"]
    for i, (label, hist) in enumerate(series):
        colour, lw = colours[i % len(colours)], 2.2 if i == 0 else 1.3
        for ax, key in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            for prefix, style in (("", "--"), ("val_", "-")):
                values = [v for v in hist.get(prefix + key) or []]
                if not values:
                    continue
                scale = 100.0 if key == "accuracy" else 1.0
                ax.plot(range(1, len(values) + 1), [scale * v if v is not None else math.nan for v in values],
                        linestyle=style, marker="o" if len(values) < 3 else None, markersize=4, color=colour,
                        linewidth=lw, label=f"{label} {'val' if prefix else 'train'}")
    loss_ax.set(title="loss", xlabel="epoch", ylabel="loss")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=7)
    _save(fig, path)


def history(trials: Sequence[dict[str, Any]], path: Path) -> None:
    """Each trial's validation accuracy in trial order and the best so far; pruned and failed trials marked.

    Args:
        trials: ``number``, ``state`` (complete/pruned/fail/...), ``val`` (percent or ``None``), ``baseline``.
    """
    fig, (ax,) = _figure(8, 4)
    done = [t for t in trials if t["state"] == "complete" and t["val"] is not None]
    searched = [t for t in done if not t["baseline"]]
    base = [t for t in done if t["baseline"]]
    ax.scatter([t["number"] for t in searched], [t["val"] for t in searched], color=OTHER, s=22, zorder=3,
               label="complete")
    ax.scatter([t["number"] for t in base], [t["val"] for t in base], color=BASE, marker="s", s=30, zorder=3,
               label="baseline")
    for t in base:
        ax.annotate(t["baseline"], (t["number"], t["val"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    pruned = [t for t in trials if t["state"] == "pruned" and t["val"] is not None]
    if pruned:
        ax.scatter([t["number"] for t in pruned], [t["val"] for t in pruned], color=PRUNED, marker="x", s=30,
                   zorder=3, label="pruned (best epoch so far)")
    best, xs, ys = -math.inf, [], []
    for t in sorted(done, key=lambda t: t["number"]):
        best = max(best, t["val"])
        xs.append(t["number"])
        ys.append(best)
    if xs:
        last = max(t["number"] for t in trials)
        ax.step(xs + [last], ys + [ys[-1]], where="post", color=BEST, linewidth=1.8, label="best so far")
    failed = [t for t in trials if t["state"] == "fail"]
    if failed:
        low = ax.get_ylim()[0]
        ax.scatter([t["number"] for t in failed], [low] * len(failed), color=FAILED, marker="v", s=36, zorder=3,
                   clip_on=False, label="failed (no accuracy)")
    ax.set(title="optimization history", xlabel="trial", ylabel="validation accuracy (%)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def time_to_quality(curve: Sequence[tuple[float, float, int]], trials: Sequence[tuple[float, float]],
                    baseline: tuple[str, float] | None, path: Path) -> None:
    """The best validation accuracy so far against wall time, each completed trial where it finished, and the best
    hand-chosen configuration's accuracy as a dashed line.

    Args:
        curve: ``(minutes, best so far in percent, trial)`` where it rose (``tuner.store.time_to_quality``).
        trials: ``(minutes, validation accuracy in percent)`` of each completed trial.
        baseline: the best baseline's name and validation accuracy in percent, or ``None``.
    """
    fig, (ax,) = _figure(8, 4)
    ax.scatter([m for m, _ in trials], [v for _, v in trials], color=OTHER, s=16, zorder=2, label="trial")
    end = max([m for m, _ in trials] + [m for m, _, _ in curve])
    xs, ys = [m for m, _, _ in curve], [v for _, v, _ in curve]
    ax.step(xs + [end], ys + [ys[-1]], where="post", color=BEST, linewidth=1.8, zorder=3, label="best so far")
    for minutes, value, number in curve[-3:]:
        ax.annotate(f"#{number}", (minutes, value), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if baseline is not None:
        ax.axhline(baseline[1], color=BASE, linestyle="--", linewidth=1.2, label=f"best baseline ({baseline[0]})")
    ax.set(title="time to quality", xlabel="minutes since the first trial started", ylabel="validation accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def importance(values: dict[str, float], evaluator: str, path: Path) -> None:
    """Hyperparameter importances as horizontal bars, the most important on top."""
    items = list(values.items())[:15]
    fig, (ax,) = _figure(7, max(2.5, 0.32 * len(items) + 1.2))
    names = [k for k, _ in items][::-1]
    bars = ax.barh(names, [v for _, v in items][::-1], color=BASE)
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set(title=f"hyperparameter importance{f' ({evaluator})' if evaluator else ''}",
           xlabel="importance (sums to 1)")
    ax.tick_params(axis="y", labelsize=8)
    _save(fig, path)


def by_value(panels: Sequence[dict[str, Any]], path: Path) -> None:
    """Validation accuracy by the value of each of a few choice points: a box and the trials (jittered) per value of
    a categorical one, a scatter for a numeric one (log x when it is sampled on a log scale).

    Args:
        panels: ``name``, ``kind`` (``categorical`` or ``numeric``), ``log``, ``points`` (``(value, val %)``),
            ``best`` (the best trial's value).
    """
    fig, axes = _figure(4.2 * len(panels) + 0.5, 3.8, ncols=len(panels))
    rng = random.Random(0)  # the jitter only spreads points; fixed so that the figure is the same every time
    for ax, panel in zip(axes, panels):
        points = panel["points"]
        if panel["kind"] == "categorical":
            labels = sorted({_label(v) for v, _ in points}, key=lambda s: [_label(v) for v, _ in points].index(s))
            groups = [[acc for v, acc in points if _label(v) == lab] for lab in labels]
            ax.boxplot(groups, positions=range(len(labels)), widths=0.5, showfliers=False)
            for i, group in enumerate(groups):
                ax.scatter([i + rng.uniform(-0.12, 0.12) for _ in group], group, color=BASE, s=14, alpha=0.7,
                           zorder=3)
            ax.set_xticks(range(len(labels)), labels, rotation=25 if len(labels) > 3 else 0, fontsize=8,
                          ha="right" if len(labels) > 3 else "center", rotation_mode="anchor")
            if _label(panel["best"]) in labels:
                i = labels.index(_label(panel["best"]))
                ax.scatter([i], [max(groups[i])], marker="*", s=140, color=BEST, zorder=4, label="best trial")
        else:
            ax.scatter([v for v, _ in points], [acc for _, acc in points], color=BASE, s=16, alpha=0.75)
            if panel["best"] is not None:
                best_acc = max(acc for v, acc in points if v == panel["best"])
                ax.scatter([panel["best"]], [best_acc], marker="*", s=140, color=BEST, zorder=4, label="best trial")
            if panel["log"]:
                _log_x(ax)
        ax.set(title=panel["name"], xlabel=panel["name"], ylabel="validation accuracy (%)")
        if ax.collections and any(c.get_label() == "best trial" for c in ax.collections):
            ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _log_x(ax) -> None:
    """A log x-axis labelled with plain numbers at 1, 2 and 5 per decade (not 2x10^1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def pareto(points: Sequence[tuple[float, float, int]], front: Sequence[tuple[float, float, int]],
           baselines: Sequence[tuple[str, float, float]], xlabel: str, path: Path) -> None:
    """Validation accuracy against size or latency (log x): every trial, the non-dominated ones connected.

    Args:
        points: ``(x, val %, trial number)`` of every completed trial.
        front: the non-dominated ones, smallest first.
        baselines: ``(name, x, val %)`` drawn as labelled points.
    """
    fig, (ax,) = _figure(8, 4.5)
    ax.scatter([p[0] for p in points], [p[1] for p in points], color=OTHER, s=18, label="trials")
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color=BEST, linewidth=1.5)
    ax.scatter([p[0] for p in front], [p[1] for p in front], color=BEST, s=40, zorder=3, label="Pareto front")
    for x, acc, number in front:
        ax.annotate(f"#{number}", (x, acc), fontsize=7, xytext=(4, -10), textcoords="offset points")
    if baselines:
        ax.scatter([b[1] for b in baselines], [b[2] for b in baselines], color=BASE, marker="s", s=40, zorder=4,
                   label="baselines")
        for name, x, acc in baselines:
            ax.annotate(name, (x, acc), fontsize=8, xytext=(4, 4), textcoords="offset points", color=BASE)
    if all(p[0] > 0 for p in points):
        _log_x(ax)
    ax.set(title="accuracy vs " + xlabel + " (up and to the left is better)", xlabel=xlabel,
           ylabel="validation accuracy (%)")
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
