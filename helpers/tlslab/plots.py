"""Figures for the course, drawn with matplotlib from the helpers' own data.

Each function returns the ``Figure`` (a notebook shows it; a test can inspect it) and never
calls ``plt.show()`` itself.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from .bytestats import byte_histogram, describe_entropy, shannon_entropy
from .history import PROTOCOLS, ProtocolVersion

__all__ = ["avalanche", "byte_histograms", "chain", "costs", "ladder", "mesh_matrix", "rotation_timeline", "timeline"]

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


def byte_histograms(samples: dict[str, bytes]) -> Figure:
    """One histogram of byte values per sample, side by side, each titled with its entropy.

    ``samples`` maps a label (``"plaintext"``, ``"TLS"``) to the bytes an eavesdropper saw.
    """
    fig = Figure(figsize=(5 * len(samples), 3.2), layout="constrained")
    axes = fig.subplots(1, len(samples), squeeze=False)[0]
    for ax, (label, data) in zip(axes, samples.items()):
        bits = shannon_entropy(data)
        ax.bar(range(256), byte_histogram(data), width=1.0, color="#2c7fb8" if bits >= 7 else "#d95f0e")
        ax.set_title(f"{label}: {bits:.1f} bits/byte, {describe_entropy(bits)}", fontsize=9)
        ax.set_xlim(0, 255)
        ax.set_xlabel("byte value")
        ax.set_ylabel("count")
    return fig


def costs(table) -> Figure:  # table: tlslab.costs.CostTable
    """Key generation and handshake time per key type (log scale: RSA is that much slower)."""
    from .costs import LABELS

    keys = list(table.keygen_ms)
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for ax, values, title in (
        (left, table.keygen_ms, "generating one key"),
        (right, table.handshake_ms, "one full handshake (connect)"),
    ):
        ax.bar([LABELS[k] for k in keys], [values[k] for k in keys], color=["#27ae60", "#27ae60", "#c0392b", "#c0392b"][: len(keys)])
        ax.set_yscale("log")
        ax.set_ylabel("milliseconds (log scale)")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
    return fig


# --- the chain of trust (chapter 2) ----------------------------------------------------------

_RED, _INK, _GREY = "#c0392b", "#34495e", "#7f8c8d"


def _chain_cn(name) -> str:  # name: x509.Name
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else (name.rfc4514_string() or "(empty)")


def _chain_role(index: int, count: int, cert) -> str:
    self_issued = cert.issuer == cert.subject
    if count == 1:
        return "self-signed certificate" if self_issued else "leaf certificate"
    if index == 0:
        return "leaf certificate"
    if index == count - 1:
        return "root CA" if self_issued else "CA (top of the chain)"
    return "intermediate CA"


def _chain_lines(index: int, cert) -> list[str]:
    import textwrap

    from cryptography import x509

    from .pki import describe_key

    issuer = "itself" if cert.issuer == cert.subject else _chain_cn(cert.issuer)
    lines = textwrap.wrap(f"issuer: {issuer}", 40, subsequent_indent="   ")
    if index == 0:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = ", ".join(str(n.value) for n in san)
        except x509.ExtensionNotFound:
            names = "(none)"
        lines += textwrap.wrap(f"names (SAN): {names}", 40, subsequent_indent="   ")
    lines.append(f"valid: {cert.not_valid_before_utc:%Y-%m-%d} → {cert.not_valid_after_utc:%Y-%m-%d}")
    lines.append(f"key: {describe_key(cert.public_key())}")
    return lines


def chain(chain, *, broken=None, title: str | None = None, not_sent=()) -> Figure:
    """The chain of trust: root (left) → intermediate(s) → leaf (right), each box with subject,
    issuer, validity and key, joined by "signs" arrows.

    ``chain``: ``x509.Certificate`` objects, leaf first and root last (as a gallery result holds
    them). ``broken``: the certificate where the chain breaks, drawn in red with its label: an
    index into ``chain``, an ``(index, label)`` pair, or an object with ``.index`` and ``.label``
    (a :class:`tlslab.gallery.BrokenLink`). When it is an issuer, its "signs" arrow is red too.
    ``not_sent``: indices of certificates the server did not send (dashed boxes and arrows).

    Every box, arrow and label has a ``gid`` (``chain-box-0`` is the leaf's box, ``chain-link-0``
    the arrow into it, ``chain-broken-label``) so a test can find it.
    """
    import textwrap

    from cryptography import x509
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    certs = list(chain)
    if not certs:
        raise ValueError("an empty chain has nothing to draw")
    for cert in certs:
        if not isinstance(cert, x509.Certificate):
            raise TypeError(f"chain holds x509.Certificate objects, not {type(cert).__name__}")
    if broken is None:
        index, label = None, ""
    elif isinstance(broken, int):
        index, label = broken, "broken"
    elif isinstance(broken, tuple):
        index, label = broken
    else:
        index, label = broken.index, broken.label
    if index is not None and not 0 <= index < len(certs):
        raise ValueError(f"broken index {index} is outside the chain (0 to {len(certs) - 1})")
    missing = set(not_sent)
    if getattr(broken, "missing", False):
        missing.add(index)

    count = len(certs)
    width, height, gap = 3.9, 1.75, 1.2
    span = count * width + (count - 1) * gap
    fig_width = max(4.4, 0.78 * span + 0.4)
    fig = Figure(figsize=(fig_width, 2.9))
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.8 if title else 0.96))
    ax.set_xlim(-0.2, span + 0.2)
    ax.set_ylim(-0.6, height + 0.1)
    ax.set_axis_off()

    def left(i: int) -> float:  # the root is drawn on the left, the leaf on the right
        return (count - 1 - i) * (width + gap)

    for i, cert in enumerate(certs):
        bad = i == index
        box = FancyBboxPatch(
            (left(i), 0), width, height, boxstyle="round,pad=0,rounding_size=0.12",
            facecolor="#fdecea" if bad else ("#f4f6f7" if i in missing else "#eaf2f8"),
            edgecolor=_RED if bad else (_GREY if i in missing else _INK),
            linewidth=2.4 if bad else 1.2, linestyle="--" if i in missing else "-",
        )
        box.set_gid(f"chain-box-{i}")
        ax.add_patch(box)
        ax.text(left(i) + width / 2, height - 0.1, _chain_role(i, count, cert), ha="center", va="top",
                fontsize=8.5, style="italic", color=_RED if bad else _GREY, gid=f"chain-role-{i}")
        ax.text(left(i) + width / 2, height - 0.36, _chain_cn(cert.subject), ha="center", va="top",
                fontsize=9.5, weight="bold", color=_RED if bad else _INK, gid=f"chain-subject-{i}")
        ax.text(left(i) + 0.18, height - 0.68, "\n".join(_chain_lines(i, cert)), ha="left", va="top",
                fontsize=7.8, linespacing=1.3, color="#222222", gid=f"chain-text-{i}")
        below = None
        if bad:
            below = (f"✗ {label}", _RED, "bold", "chain-broken-label")
        elif i in missing:
            below = ("not sent by the server", _GREY, "normal", f"chain-missing-label-{i}")
        if below:
            text, colour, weight, gid = below
            ax.text(left(i) + width / 2, -0.1, "\n".join(textwrap.wrap(text, 44)), ha="center", va="top",
                    fontsize=8.5, weight=weight, color=colour, gid=gid)
    for i in range(count - 1):  # the arrow from chain[i + 1] (the issuer) into chain[i]
        bad = index == i + 1
        dashed = i in missing or i + 1 in missing
        colour = _RED if bad else "#555555"
        start, end = left(i + 1) + width, left(i)
        arrow = FancyArrowPatch((start + 0.05, height / 2), (end - 0.05, height / 2), arrowstyle="-|>",
                                mutation_scale=16, color=colour, linewidth=2 if bad else 1.3,
                                linestyle="--" if dashed else "-")
        arrow.set_gid(f"chain-link-{i}")
        ax.add_patch(arrow)
        ax.text((start + end) / 2, height / 2 + 0.08, "signs", ha="center", va="bottom", fontsize=8.5,
                color=colour, gid=f"chain-link-label-{i}")
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, int(fig_width * 10))), fontsize=10.5)
    return fig


def avalanche(first: bytes, second: bytes, algorithm: str = "sha256") -> Figure:
    """The avalanche effect: the bits of two digests side by side, differing bits in red.

    Change one input bit and about half of the output bits flip, in no predictable place.
    """
    import hashlib

    digests = [hashlib.new(algorithm, data).digest() for data in (first, second)]
    bits = [[(byte >> (7 - i)) & 1 for byte in d for i in range(8)] for d in digests]
    width = 32
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    axes = fig.subplots(3, 1, gridspec_kw={"height_ratios": [1, 1, 1]})
    differ = [a != b for a, b in zip(*bits)]
    titles = (f"{algorithm}({first!r:.40})", f"{algorithm}({second!r:.40})",
              f"bits that differ: {sum(differ)} of {len(differ)}")
    for ax, row, title in zip(axes, (bits[0], bits[1], [int(d) for d in differ]), titles):
        grid = [row[i:i + width] for i in range(0, len(row), width)]
        cmap = "Reds" if title.startswith("bits") else "Greys"
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


# --- mutual TLS: the mesh and certificate rotation (chapter 5) ---------------------------------

_MESH_STAGES = (  # (stage, colour, legend label), in the colour map's order
    ("allowed", "#27ae60", "allowed (HTTP 200)"),
    ("policy", "#e67e22", "denied by policy (HTTP 403)"),
    ("svid", "#8e44ad", "invalid SVID (HTTP 403)"),
    ("tls", "#c0392b", "refused by TLS (no request sent)"),
    ("error", "#7f8c8d", "error"),
    ("self", "#ecf0f1", "no self-call"),
)


def mesh_matrix(matrix, *, title: str | None = None) -> Figure:  # matrix: tlslab.mesh.CallMatrix
    """The mesh's calls as a heat map: rows are callers, columns callees; each cell coloured by
    how the call ended (green allowed, orange policy, red TLS refusal) and labelled with it.

    Cells have ``gid`` ``mesh-cell-<caller>-<callee>`` so a test can find them.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    stages = [s for s, _, _ in _MESH_STAGES]
    cmap = ListedColormap([c for _, c, _ in _MESH_STAGES])
    callers, callees = list(matrix.callers), list(matrix.callees)
    grid = [[stages.index(matrix.outcome(a, b)) if matrix.outcome(a, b) in stages else stages.index("error")
             for b in callees] for a in callers]
    fig = Figure(figsize=(1.9 * len(callees) + 3.2, 0.8 * len(callers) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(stages) - 0.5, aspect="auto")
    for i, caller in enumerate(callers):
        for j, callee in enumerate(callees):
            stage = matrix.outcome(caller, callee)
            ax.text(j, i, matrix.label(caller, callee).replace("TLS: ", "TLS\n"), ha="center", va="center",
                    fontsize=8, color="#555555" if stage == "self" else "white", weight="bold",
                    gid=f"mesh-cell-{caller}-{callee}")
    ax.set_xticks(range(len(callees)), callees)
    ax.set_yticks(range(len(callers)), callers)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("callee (the server that decides)")
    ax.set_ylabel("caller (the client)")
    ax.set_xticks([x - 0.5 for x in range(1, len(callees))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(callers))], minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    seen = {matrix.outcome(a, b) for a in callers for b in callees}
    handles = [Patch(color=c, label=label) for s, c, label in _MESH_STAGES if s in seen and s != "self"]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def rotation_timeline(timeline, *, title: str | None = None) -> Figure:  # timeline: tlslab.rotation.Timeline
    """Certificates and connections over time: one row of bars per rotated identity (each bar a
    certificate, from "valid from" to "valid until", a dark triangle where it was issued; successive
    certificates alternate above and below the line), and a row of connections (green ticks
    succeeded, red crosses failed); revocations as red dashed lines.
    """
    rows = list(dict.fromkeys(c.who for c in timeline.certificates))
    connections = timeline.connections
    revoked = timeline.of_kind("revoked")
    fig = Figure(figsize=(10, 1.0 + 0.75 * (len(rows) + 1)), layout="constrained")
    ax = fig.subplots()
    shades = ("#2c7fb8", "#7fcdbb")
    end = max([timeline.now() if not connections else connections[-1].t, 0.0]
              + [c.issued_at for c in timeline.certificates])
    for row, who in enumerate(rows, start=1):
        for span in (c for c in timeline.certificates if c.who == who):
            # Alternate generations above and below the row's line, so the overlap shows: the new
            # certificate is issued while the old one is still valid.
            y = row + (0.17 if span.generation % 2 else -0.17)
            ax.barh(y, span.lifetime, left=span.not_before, height=0.3, color=shades[span.generation % 2],
                    edgecolor="white", alpha=0.95, gid=f"rotation-cert-{who}-{span.generation}")
            ax.plot([span.issued_at], [y], marker=">", color="#34495e", markersize=5)
            ax.text(span.not_before + 0.04, y, f"  #{span.generation}", va="center", fontsize=7, color="white")
    ok = [e.t for e in connections if e.ok]
    bad = [e.t for e in connections if not e.ok]
    if ok:
        ax.plot(ok, [0] * len(ok), "|", color="#27ae60", markersize=12, gid="rotation-connections-ok")
    if bad:
        ax.plot(bad, [0] * len(bad), "x", color="#c0392b", markersize=6, gid="rotation-connections-failed")
    for event in revoked:
        ax.axvline(event.t, color="#c0392b", linestyle="--", linewidth=1.2)
        ax.text(event.t, len(rows) + 0.55, f" {event.who} revoked", color="#c0392b", fontsize=8, va="bottom")
    labels = [f"connections\n{len(ok)} ok, {len(bad)} failed"] + [f"{who}'s\ncertificates" for who in rows]
    ax.set_yticks(range(len(rows) + 1), labels, fontsize=8)
    ax.set_ylim(-0.6, len(rows) + 0.9)
    ax.set_xlim(min([0.0] + [c.not_before for c in timeline.certificates]), max(end, 1.0) + 0.3)
    ax.set_xlabel("seconds since the start")
    ax.set_title(title or "Short-lived certificates, renewed while connections go on", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def ladder(rows, *, title: str = "The handshake, message by message") -> Figure:
    """A ladder diagram: client on the left, server on the right, one arrow per message.

    ``rows``: ``(direction, label)`` pairs in order, direction ``"client"`` or ``"server"`` (what
    ``DecryptedSession.rows()`` or ``Handshake.rows()`` give: extra fields are ignored).
    Encrypted messages are drawn in blue, cleartext ones in grey.
    """
    rows = [(r[0], r[2] if len(r) == 4 else r[1]) for r in rows]  # decrypt rows: (dir, type, what, size)
    fig = Figure(figsize=(8, 0.42 * len(rows) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.set_xlim(0, 10)
    ax.set_ylim(len(rows) + 0.5, -0.8)
    ax.axis("off")
    for x, name in ((1, "client"), (9, "server")):
        ax.plot([x, x], [-0.3, len(rows) + 0.3], color="#555", lw=2)
        ax.text(x, -0.6, name, ha="center", fontsize=11, weight="bold")
    plain = ("ClientHello", "ServerHello", "HelloRetryRequest", "ChangeCipherSpec", "Certificate (TLS 1.2)",
             "ServerKeyExchange", "ServerHelloDone", "ClientKeyExchange")
    for i, (direction, label) in enumerate(rows, start=0):
        y = i + 0.3
        start, end = (1, 9) if direction == "client" else (9, 1)
        colour = "#7f8c8d" if label.startswith(plain) else "#2c7fb8"
        ax.annotate("", xy=(end, y), xytext=(start, y), arrowprops=dict(arrowstyle="->", color=colour, lw=1.5))
        ax.text(5, y - 0.12, label if len(label) <= 60 else label[:59] + "…", ha="center", fontsize=8.5, color=colour)
    ax.set_title(title, fontsize=10)
    return fig
