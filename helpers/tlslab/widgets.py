"""The course's interactive explorers: thin ipywidgets views over plain experiment functions.

Each explorer only collects inputs, calls the experiment (the same function the tests call) and
shows the result object. Nothing here computes anything of its own.

Results go into ``HTML`` and ``Image`` widgets (widget state) rather than an ``Output`` widget:
output captured by an ``Output`` widget leaks into the cell's own outputs under nbval.
"""

from __future__ import annotations

import html
import io
from typing import Callable

import ipywidgets as w

__all__ = ["eavesdrop_explorer", "gallery_explorer", "png"]


def png(fig) -> bytes:
    """A matplotlib figure as PNG bytes, for an ``Image`` widget."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _guarded(result: w.HTML, action: Callable[[], None]) -> None:
    # A widget must survive any input: show the error where the result would be.
    try:
        action()
    except Exception as exc:
        result.value = f"<pre style='color:#c0392b'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</pre>"


def eavesdrop_explorer(message: str = "password=correct-horse-battery-staple") -> w.VBox:
    """Type a message, choose plaintext or TLS, send it through a tap, see what crossed the wire."""
    from . import plots
    from .eavesdrop import TLS12_SUITES, eavesdrop

    text = w.Text(value=message, description="message", layout=w.Layout(width="60%"))
    mode = w.ToggleButtons(options=["plaintext", "TLS 1.3", "TLS 1.2"], value="TLS 1.3", description="send over")
    suite = w.Dropdown(options=TLS12_SUITES, value=TLS12_SUITES[0], description="TLS 1.2 suite", disabled=True,
                       style={"description_width": "initial"}, layout=w.Layout(width="60%"))
    send = w.Button(description="send through the tap", button_style="primary", icon="paper-plane")
    result = w.HTML()
    histogram = w.Image(format="png", layout=w.Layout(max_width="520px"))

    def on_mode(change: dict) -> None:
        suite.disabled = change["new"] != "TLS 1.2"

    def run() -> None:
        if mode.value == "plaintext":
            seen = eavesdrop(text.value, tls=False)
        elif mode.value == "TLS 1.2":
            seen = eavesdrop(text.value, cipher=suite.value)
        else:
            seen = eavesdrop(text.value)
        result.value = seen._repr_html_()
        histogram.value = png(plots.byte_histograms({seen.mode: seen.capture.client_bytes}))

    mode.observe(on_mode, names="value")
    send.on_click(lambda _: _guarded(result, run))
    _guarded(result, run)
    return w.VBox([text, mode, suite, send, result, histogram])


def gallery_explorer(case: str = "control") -> w.VBox:
    """Pick a broken server from the gallery; see the live verdict and the chain with its broken link."""
    from .gallery import CASES, run_case

    choice = w.Dropdown(
        options=[(f"{name} — {c.description}", name) for name, c in CASES.items()],
        value=case, description="server", layout=w.Layout(width="90%"),
    )
    verdict = w.HTML()
    chain = w.Image(format="png", layout=w.Layout(max_width="760px"))

    def run() -> None:
        result = run_case(choice.value)
        verdict.value = result._repr_html_()
        chain.value = png(result.plot())

    choice.observe(lambda _: _guarded(verdict, run), names="value")
    _guarded(verdict, run)
    return w.VBox([choice, verdict, chain])
