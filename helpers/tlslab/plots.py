"""Figures for the course, drawn with matplotlib from the helpers' own data.

Each function returns the ``Figure`` (a notebook shows it; a test can inspect it) and never
calls ``plt.show()`` itself.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from .history import PROTOCOLS, ProtocolVersion

__all__ = ["timeline"]

_IN_USE_UNTIL = 2026  # where bars of versions still in use end on the axis


def timeline(protocols: tuple[ProtocolVersion, ...] = PROTOCOLS) -> Figure:
    """SSL 2.0 → TLS 1.3: one bar per version, from publication to retirement.

    Bars are red for retired versions and green for those in use; each is labelled with its RFC
    and the attack or weakness that ended it.
    """
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    for row, p in enumerate(reversed(protocols)):
        end = p.retired or _IN_USE_UNTIL
        colour = "#c0392b" if p.retired else "#27ae60"
        ax.barh(row, end - p.year, left=p.year, color=colour, alpha=0.85, height=0.6)
        label = f"{p.defined_by}" + (f" → retired by {p.retired_by}" if p.retired_by else " — in use")
        ax.text(p.year + 0.3, row + 0.38, label, fontsize=8, va="bottom")
        ax.text(end + 0.3, row, p.label, fontsize=7.5, va="center", color="#444")
    ax.set_yticks(range(len(protocols)), [p.name for p in reversed(protocols)])
    ax.set_xlim(1994, 2048)
    ax.set_ylim(-0.6, len(protocols) - 0.1)
    ax.set_xlabel("year")
    ax.set_title("SSL and TLS versions: published (left end) and retired (right end)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig
