"""Matplotlib figures: Kaplan-Meier curves with a number-at-risk table, nomograms and
calibration plots. Every function builds a new ``Figure`` (no pyplot state; works with the Agg
backend) and returns it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gliorad.survival._validate import check_groups, check_survival
from gliorad.survival.calibration import CalibrationResult
from gliorad.survival.km import group_levels, kaplan_meier, logrank_test
from gliorad.survival.nomogram import Nomogram


def _format_p(p: float) -> str:
    return "P < 0.001" if p < 0.001 else f"P = {p:.3f}"


def plot_km(
    time: object,
    event: object,
    group: object | None = None,
    *,
    conf_int: bool = True,
    conf_type: str = "log",
    risk_times: Sequence[float] | None = None,
    xlabel: str = "Time (days)",
    ylabel: str = "Survival probability",
    title: str | None = None,
    show_logrank: bool = True,
    figsize: tuple[float, float] = (6.4, 5.2),
) -> Figure:
    """Kaplan-Meier curves (one per group) with censoring ticks, confidence bands, the
    log-rank P value (2+ groups) and a number-at-risk table below the plot.

    Parameters
    ----------
    time, event : array-like
        Survival data.
    group : array-like, optional
        Group labels; one curve per level.
    conf_int, conf_type
        Draw pointwise bands (:func:`kaplan_meier` ``conf_type``).
    risk_times : sequence of float, optional
        Times for the number-at-risk table (default: the x-axis ticks).
    xlabel, ylabel, title : str
    show_logrank : bool
        Print the log-rank P value in the plot when there are 2+ groups.

    Returns
    -------
    matplotlib.figure.Figure
    """
    t, e = check_survival(time, event, require_event=False)
    if group is None:
        g = np.full(t.size, "All", dtype=object)
        levels = ["All"]
    else:
        g = check_groups(group, t.size)
        levels = group_levels(group if isinstance(group, pd.Series) else pd.Series(g))
    fig = Figure(figsize=figsize)
    ax, ax_risk = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for i, level in enumerate(levels):
        sel = np.asarray(g == level)
        km = kaplan_meier(t[sel], e[sel], conf_type=conf_type)
        color = f"C{i}"
        xs = np.concatenate(([0.0], km["time"]))
        ys = np.concatenate(([1.0], km["surv"]))
        ax.step(xs, ys, where="post", color=color, label=f"{level} (n={sel.sum()})")
        if conf_int:
            lo = np.concatenate(([1.0], km["lower"].fillna(0.0)))
            hi = np.concatenate(([1.0], km["upper"].fillna(1.0)))
            ax.fill_between(xs, lo, hi, step="post", color=color, alpha=0.15, linewidth=0)
        cens = km[km["n_censor"] > 0]
        ax.plot(cens["time"], cens["surv"], "|", color=color, markersize=7)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(levels) > 1:
        ax.legend(loc="lower left", frameon=False)
        if show_logrank:
            res = logrank_test(t, e, g)
            ax.text(0.98, 0.95, f"Log-rank {_format_p(res.p_value)}", transform=ax.transAxes,
                    ha="right", va="top")
    ticks = np.asarray(risk_times) if risk_times is not None else ax.get_xticks()
    ticks = ticks[(ticks >= 0) & (ticks <= t.max())]
    for i, level in enumerate(levels):
        sel = np.asarray(g == level)
        counts = [(t[sel] >= x).sum() for x in ticks]
        for x, c in zip(ticks, counts, strict=True):
            ax_risk.text(x, -i, str(c), ha="center", va="center", color=f"C{i}", fontsize=8)
    ax_risk.set_yticks(-np.arange(len(levels)), [str(lv) for lv in levels], fontsize=8)
    ax_risk.set_ylim(-len(levels) + 0.5, 0.5)
    ax_risk.set_title("Number at risk", fontsize=9, loc="left")
    ax_risk.tick_params(axis="y", length=0, pad=18)
    for side in ("top", "right", "left"):
        ax_risk.spines[side].set_visible(False)
    ax_risk.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def _draw_axis(ax, y: float, x: np.ndarray, labels: Sequence[str], name: str) -> None:
    order = np.argsort(x)
    x, labels = np.asarray(x)[order], [labels[i] for i in order]
    ax.hlines(y, x.min(), x.max(), color="black", linewidth=0.8)
    for k, (xi, lab) in enumerate(zip(x, labels, strict=True)):
        ax.vlines(xi, y, y + 0.15, color="black", linewidth=0.8)
        close = k > 0 and xi - x[k - 1] < 3.0
        ax.text(xi, y + (0.2 if not close or k % 2 == 0 else -0.35), lab, ha="center",
                va="bottom", fontsize=7)
    ax.text(-4, y, name, ha="right", va="center", fontsize=8)


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, (int, float, np.floating, np.integer)) else str(v)


def plot_nomogram(nom: Nomogram, figsize: tuple[float, float] | None = None) -> Figure:
    """Draw a nomogram: Points axis on top, one axis per factor, Total points, linear predictor
    and one axis per survival time (total-points axes rescaled to the same width).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_rows = 1 + len(nom.factors) + 1 + len(nom.survival)
    fig = Figure(figsize=figsize or (8.0, 0.6 * n_rows + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    points = np.arange(0, nom.maxscale + 1e-9, nom.maxscale / 10)
    y = 0.0
    _draw_axis(ax, y, points, [_fmt(p) for p in points], "Points")
    for axis in nom.factors:
        y -= 1
        _draw_axis(ax, y, axis.points, [_fmt(v) for v in axis.values], axis.label)
    width = nom.total_points.max() / nom.maxscale
    y -= 1
    _draw_axis(ax, y, nom.total_points / width, [_fmt(v) for v in nom.total_points],
               "Total points")
    for axis in nom.survival:
        y -= 1
        if axis.points.size:
            _draw_axis(ax, y, axis.points / width, [_fmt(v) for v in axis.values], axis.label)
    ax.set_xlim(-0.02 * nom.maxscale, 1.05 * nom.maxscale)
    ax.set_ylim(y - 0.6, 0.8)
    ax.axis("off")
    fig.subplots_adjust(left=0.22, right=0.98, top=0.97, bottom=0.03)
    return fig


def plot_calibration(
    result: CalibrationResult,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    figsize: tuple[float, float] = (5.0, 5.0),
) -> Figure:
    """Calibration plot: mean predicted (x) versus Kaplan-Meier observed (y) survival at ``t``
    per risk group, with 95 % error bars, the ideal diagonal, and the bootstrap-corrected
    estimates as crosses (rms ``plot.calibrate``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    tab = result.table
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="Ideal")
    yerr = np.vstack([tab["observed"] - tab["observed_lower"], tab["observed_upper"] - tab["observed"]])
    ax.errorbar(tab["predicted"], tab["observed"], yerr=yerr, fmt="o-", capsize=3,
                label="Observed (Kaplan-Meier)")
    if tab["observed_corrected"].notna().any():
        ax.plot(tab["predicted"], tab["observed_corrected"], "x", color="C3", markersize=8,
                label=f"Bootstrap corrected (B={result.n_boot})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel or f"Predicted survival at t = {result.t:g}")
    ax.set_ylabel(ylabel or f"Observed survival at t = {result.t:g}")
    ax.legend(loc="upper left", frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
