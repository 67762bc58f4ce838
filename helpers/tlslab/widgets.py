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

__all__ = [
    "config_builder",
    "eavesdrop_explorer",
    "gallery_explorer",
    "mesh_explorer",
    "png",
    "rotation_explorer",
    "tamper_explorer",
]


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


def mesh_explorer(mesh=None, *, log_lines: int = 12) -> w.VBox:
    """Toggle who may call whom, send traffic through the mesh, see the allowed/denied matrix
    (heat map) and the call log. ``mesh``: a :class:`tlslab.mesh.Mesh` (a new one is started if
    none is given; it keeps running, like any server a notebook starts)."""
    from . import plots
    from .mesh import Mesh

    mesh = mesh or Mesh()
    mesh.start()
    boxes = []
    for caller in mesh.callers:
        row = [w.Checkbox(value=mesh.policy.allows(caller, callee), description=f"{caller} → {callee}", indent=False,
                          layout=w.Layout(width="170px")) for callee in mesh.callees if callee != caller]
        for box, callee in zip(row, [c for c in mesh.callees if c != caller]):
            box.observe(lambda change, a=caller, b=callee: mesh.policy.set(a, b, change["new"]), names="value")
        boxes.append(w.HBox(row))
    send = w.Button(description="send traffic", button_style="primary", icon="paper-plane")
    result = w.HTML()
    heat = w.Image(format="png", layout=w.Layout(max_width="760px"))

    def run() -> None:
        matrix = mesh.matrix()
        heat.value = png(plots.mesh_matrix(matrix))
        recent = type(mesh.log)(mesh.log[-log_lines:])
        result.value = f"<b>Policy</b>{mesh.policy._repr_html_()}<b>Call log (last {len(recent)})</b>{recent._repr_html_()}"

    send.on_click(lambda _: _guarded(result, run))
    _guarded(result, run)
    return w.VBox([w.HTML("<b>Allowed edges</b> (tick to allow)"), *boxes, send, heat, result])


def rotation_explorer(lifetime: int = 3, rotations: int = 3) -> w.VBox:
    """Choose a certificate lifetime and a number of rotations, run a client against a server
    while the rotator renews (or not), and see the timeline and the connections made and failed.

    A run takes a few seconds (about ``rotations × 2/3 × lifetime``); nothing runs until you press
    the button."""
    from .rotation import run_rotation

    life = w.IntSlider(value=lifetime, min=2, max=10, description="lifetime (s)", style={"description_width": "initial"})
    count = w.IntSlider(value=rotations, min=1, max=4, description="rotations", style={"description_width": "initial"})
    mode = w.ToggleButtons(options=["rotate both", "rotate server only", "never rotate"], value="rotate both")
    go = w.Button(description="run", button_style="primary", icon="play")
    result = w.HTML("<i>Press run: a client connects every 20 ms while the certificates come and go.</i>")
    figure = w.Image(format="png", layout=w.Layout(max_width="900px"))

    def run() -> None:
        go.disabled = True
        try:
            outcome = run_rotation(life.value, count.value, rotate=mode.value != "never rotate",
                                   rotate_client=mode.value == "rotate both")
        finally:
            go.disabled = False
        result.value = outcome._repr_html_()
        figure.value = png(outcome.plot())

    go.on_click(lambda _: _guarded(result, run))
    return w.VBox([life, count, mode, go, result, figure])


def tamper_explorer(message: str = "pay alice $10") -> w.VBox:
    """Be the attacker: pick a direction, a record (or, over plaintext, an offset), a byte and a
    bit; flip it in flight; see what the receiver got, or how the connection died and why."""
    from .integrity import FlipBit, baseline, tamper_experiment
    from .wire import CLIENT_TO_SERVER, SERVER_TO_CLIENT

    text = w.Text(value=message, description="message", continuous_update=False, layout=w.Layout(width="60%"))
    mode = w.ToggleButtons(options=["plaintext", "TLS 1.3", "TLS 1.2"], value="TLS 1.3", description="send over")
    direction = w.ToggleButtons(
        options=[("client → server", CLIENT_TO_SERVER), ("server → client", SERVER_TO_CLIENT)],
        value=CLIENT_TO_SERVER, description="direction",
    )
    record = w.Dropdown(options=[("(no records yet)", -1)], value=-1, description="record", layout=w.Layout(width="90%"))
    byte = w.BoundedIntText(value=0, min=0, max=0, description="byte")
    bit = w.IntSlider(value=0, min=0, max=7, description="bit")
    flip = w.Button(description="flip it in flight", button_style="danger", icon="bolt")
    result = w.HTML()
    records = w.HTML()
    state: dict = {"baseline": None}

    def show_records() -> None:
        base = state["baseline"]
        if base is not None:
            target = record.value if base.tls else None
            records.value = base.table_html(direction.value, record=target, byte=byte.value)

    def on_record(_: object = None) -> None:
        base = state["baseline"]
        if base is None:
            return
        if base.tls and record.value >= 0:
            rec = base.records[direction.value][record.value]
            byte.max = rec.size - 1
            byte.value = rec.payload_at if rec.payload_at is not None else min(byte.value, byte.max)
        show_records()

    def fill_records() -> None:
        base = state["baseline"]
        if base.tls:
            recs = base.records[direction.value]
            chosen = next((r for r in recs if r.is_data), recs[0])
            record.disabled = False
            byte.description = "byte"
            record.options = [(r.label, r.index) for r in recs]
            record.value = chosen.index
        else:
            record.options = [("plaintext has no records: the byte is an offset in the stream", -1)]
            record.value = -1
            record.disabled = True
            byte.description = "offset"
            byte.max = max(0, len(base.stream(direction.value)) - 1)
            byte.value = min(byte.value, byte.max)
        on_record()

    def rebaseline() -> None:
        tls = mode.value != "plaintext"
        state["baseline"] = baseline(text.value, tls=tls, version=mode.value[-3:] if tls else "1.3")
        result.value = "<i>Choose a byte and a bit, then flip it in flight.</i>"
        fill_records()

    def run() -> None:
        if state["baseline"] is None:
            rebaseline()
        tls = mode.value != "plaintext"
        if tls:
            action = FlipBit(direction.value, record=record.value, byte=byte.value, bit=bit.value)
        else:
            action = FlipBit(direction.value, offset=byte.value, bit=bit.value)
        outcome = tamper_experiment(text.value, action, tls=tls, version=mode.value[-3:] if tls else "1.3")
        result.value = outcome._repr_html_()
        show_records()

    text.observe(lambda _: _guarded(result, rebaseline), names="value")
    mode.observe(lambda _: _guarded(result, rebaseline), names="value")
    direction.observe(lambda _: _guarded(result, fill_records), names="value")
    record.observe(lambda _: _guarded(result, on_record), names="value")
    byte.observe(lambda _: _guarded(result, show_records), names="value")
    flip.on_click(lambda _: _guarded(result, run))
    _guarded(result, rebaseline)
    _guarded(result, run)
    return w.VBox([text, mode, direction, record, byte, bit, flip, result, records])


def config_builder(config=None, *, scan_now: bool = True) -> w.VBox:
    """Choose TLS versions, TLS 1.2 suites, the client-certificate policy and the certificate
    lifetime; see the ``SSLContext`` code they imply (at once) and, on "build and scan", the live
    scan of a server configured that way. ``config``: a :class:`tlslab.hardening.ServerConfig`
    to start from (default: the hardened one); ``scan_now``: scan it right away."""
    from .hardening import HARDENED, LIFETIMES, SUITE_PRESETS, ServerConfig, client_credential, hardening_ca
    from .scan import scan

    start = config or HARDENED
    versions = ["1.0", "1.1", "1.2", "1.3"]
    wide = {"description_width": "initial"}
    low = w.Dropdown(options=versions, value=start.min_version, description="minimum version", style=wide)
    high = w.Dropdown(options=versions, value=start.max_version, description="maximum version", style=wide)
    suites = w.Dropdown(
        options=[(f"{p.name} — {p.description}", p.name) for p in SUITE_PRESETS.values()],
        value=start.suites if start.suites in SUITE_PRESETS else "aead",
        description="TLS 1.2 suites", style=wide, layout=w.Layout(width="90%"),
    )
    client = w.ToggleButtons(options=["none", "optional", "required"], value=start.client_cert,
                             description="client certificates", style=wide)
    lifetimes = dict(LIFETIMES)
    if start.lifetime_days not in lifetimes.values():
        lifetimes[f"{start.lifetime_days} days"] = start.lifetime_days
    lifetime = w.Dropdown(options=list(lifetimes.items()), value=start.lifetime_days, description="certificate lifetime", style=wide)
    profile = w.ToggleButtons(options=["intermediate", "modern"], value="intermediate", description="grade against", style=wide)
    mtls = w.Checkbox(value=start.client_cert == "required", description="the profile demands client certificates (mTLS)", indent=False)
    go = w.Button(description="build and scan", button_style="primary", icon="search")
    code = w.HTML()
    result = w.HTML()

    def current() -> ServerConfig:
        return ServerConfig(min_version=low.value, max_version=high.value, suites=suites.value,
                            client_cert=client.value, lifetime_days=lifetime.value)

    def show_code() -> None:
        code.value = f"<pre style='line-height:1.3'>{html.escape(current().code())}</pre>"

    def on_change(_: object = None) -> None:
        result.value = "<i>Settings changed: press “build and scan” to scan a server configured this way.</i>"
        _guarded(code, show_code)

    def run() -> None:
        chosen = current()
        go.disabled = True
        try:
            with chosen.build(name="config-builder") as server:
                outcome = scan(server, ca=hardening_ca(), cert=client_credential() if chosen.client_cert != "none" else None,
                               profile=profile.value, require_client_cert=mtls.value)
        finally:
            go.disabled = False
        result.value = outcome._repr_html_()

    for control in (low, high, suites, client, lifetime, profile, mtls):
        control.observe(on_change, names="value")
    go.on_click(lambda _: _guarded(result, run))
    _guarded(code, show_code)
    if scan_now:
        _guarded(result, run)
    else:
        result.value = "<i>Press “build and scan” to scan a server configured this way.</i>"
    return w.VBox([low, high, suites, client, lifetime, profile, mtls, go, code, result])
