"""The review page's plots: matplotlib figures rendered server-side to inline SVG strings (no pyplot, no global
backend change, no external reference: the XML prologue, DOCTYPE and namespace URIs are stripped, which HTML5
does not need for inline SVG; element ids get a per-plot prefix so several plots can share one page).

Every function takes a section of the report (see `backend.review.report`) and returns an `<svg …>` string, or
"" when there is nothing to draw. Text stays text (`svg.fonttype: none`), so a browser test can read the labels;
labels are shown as written (no mathtext: a label such as "$\\frac{$" is text, not a formula that fails to parse).
"""

from __future__ import annotations

import functools
import io
import re

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

OUTCOME_COLOURS = {"accepted": "#2e7d32", "adjusted": "#9ccc65", "relabelled": "#ffb300", "deleted": "#e53935",
                   "added": "#5c6bc0"}
WIDTH, HEIGHT = 6.4, 3.0  # inches


def _plain_text(plot):
    """Run a plot function with mathtext off: user text ("$…$" in a label) is drawn as written."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)
    return wrapper


def label_colours(labels) -> dict:
    """A stable colour per label (tab10, then tab20) in the given order."""
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, label in enumerate(labels)}


def to_svg(fig: Figure, prefix: str) -> str:
    """Figure → inline `<svg>` with ids prefixed by `prefix`, no prologue, no namespace URIs, no style element."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": prefix}):
        fig.savefig(buffer, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    return svg.replace("<svg", f'<svg role="img" data-plot="{prefix}"', 1)


def _figure(height: float = HEIGHT):
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    return fig, fig.subplots()


@_plain_text
def labels_plot(statistics: dict, colours: dict) -> str:
    rows = statistics["labels"]
    if not rows:
        return ""
    fig, ax = _figure(max(1.6, 0.3 * len(rows) + 0.8))
    names = [r["label"] for r in rows][::-1]
    ax.barh(names, [r["regions"] for r in rows][::-1], color=[colours.get(n, "#888") for n in names])
    for y, r in enumerate(rows[::-1]):
        ax.text(r["regions"], y, f" {r['regions']}", va="center", fontsize=8)
    ax.set_xlabel("regions (annotation that counts per task)")
    ax.set_title("Regions per label")
    return to_svg(fig, "plot-labels")


@_plain_text
def days_plot(statistics: dict) -> str:
    days = statistics["days"]
    if not days:
        return ""
    fig, ax = _figure()
    x = np.arange(len(days))
    ax.bar(x, [d["annotations"] for d in days], color="#5c6bc0", label="annotations")
    ax2 = ax.twinx()
    ax2.plot(x, [d["regions"] for d in days], color="#e53935", marker="o", ms=3, label="regions")
    step = max(1, len(days) // 10)
    ax.set_xticks(x[::step], [d["day"] for d in days][::step], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("annotations")
    ax2.set_ylabel("regions")
    ax.set_title("Annotations (bars) and regions (line) per day, UTC")
    return to_svg(fig, "plot-days")


@_plain_text
def histogram_plot(hist: dict, title: str, prefix: str, colours: dict, log_x: bool = False) -> str:
    if not sum(hist["counts"]):
        return ""
    fig, ax = _figure()
    edges = np.array(hist["edges"])
    bottom = np.zeros(len(edges) - 1)
    for label, counts in hist["by_label"].items():
        ax.bar(edges[:-1], counts, width=np.diff(edges), bottom=bottom, align="edge", color=colours.get(label, "#888"),
               label=label, edgecolor="white", linewidth=0.3)
        bottom += np.array(counts)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(hist["unit"])
    ax.set_ylabel("regions")
    ax.set_title(title)
    if 1 < len(hist["by_label"]) <= 12:
        ax.legend(fontsize=7, ncols=2)
    return to_svg(fig, prefix)


@_plain_text
def acceptance_plot(acceptance: dict) -> str:
    rows = acceptance["by_label"]
    if not rows:
        return ""
    fig, ax = _figure(max(1.6, 0.3 * len(rows) + 1.0))
    names = list(rows)[::-1]
    left = np.zeros(len(names))
    for outcome, colour in OUTCOME_COLOURS.items():
        values = np.array([rows[n][outcome] for n in names], float)
        ax.barh(names, values, left=left, color=colour, label=outcome)
        left += values
    ax.set_xlabel("regions (prediction's label; added: annotation's)")
    ax.set_title("What annotators did with the pre-labels, per label")
    fig.legend(fontsize=7, ncols=5, loc="outside lower center")
    return to_svg(fig, "plot-acceptance")


@_plain_text
def versions_plot(acceptance: dict) -> str:
    rows = acceptance["by_model_version"]
    if not rows:
        return ""
    fig, ax = _figure()
    x = np.arange(len(rows))
    for key, colour in (("precision", "#2e7d32"), ("recall", "#5c6bc0"), ("unchanged", "#9e9e9e")):
        ax.plot(x, [np.nan if r[key] is None else r[key] for r in rows], marker="o", color=colour, label=key)
    ax.set_xticks(x, [r["model_version"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("Pre-label precision and recall as judged, per model version")
    ax.legend(fontsize=7)
    return to_svg(fig, "plot-versions")


@_plain_text
def routing_plot(routing: dict) -> str:
    points = [p for p in routing["points"] if p["tasks_above"]]
    if not points:
        return ""
    fig, ax = _figure(3.4)
    t = [p["threshold"] for p in points]
    ax.plot(t, [p["share_above"] for p in points], color="#5c6bc0", marker=".", label="share of tasks above")
    ax.plot(t, [p["f1_above"] for p in points], color="#2e7d32", marker=".", label="region F1 of those tasks")
    ax.plot(t, [p["unchanged_above"] for p in points], color="#9e9e9e", marker=".", label="kept unchanged")
    if routing["suggested_threshold"] is not None:
        ax.axvline(routing["suggested_threshold"], color="#e53935", ls="--",
                   label=f"F1 >= {routing['target_f1']} from {routing['suggested_threshold']}")
    ax.set_xlabel("prediction score threshold")
    ax.set_ylim(0, 1.05)
    ax.set_title("Routing: auto-accept tasks above a score")
    ax.legend(fontsize=7)
    return to_svg(fig, "plot-routing")


@_plain_text
def embedding_plot(embedding: dict, colours: dict) -> str:
    points = embedding.get("points") or []
    if not points:
        return ""
    fig, ax = _figure(4.8)
    xy = np.array([[p["x"], p["y"]] for p in points])
    labels = np.array([p["label"] for p in points], object)
    flagged = np.array([p["flagged"] for p in points])
    for label in dict.fromkeys(labels):
        sel = labels == label
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=colours.get(label, "#888"), label=label, alpha=0.8, linewidths=0)
    if flagged.any():
        ax.scatter(xy[flagged, 0], xy[flagged, 1], s=40, facecolors="none", edgecolors="black", linewidths=0.8,
                   label="flagged")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"Annotated regions, {embedding['method'].upper()} of their crop features")
    if len(set(labels)) <= 12:
        ax.legend(fontsize=7, markerscale=2)
    return to_svg(fig, "plot-embedding")
