"""From SSL 2.0 to TLS 1.3: each version, when it came, what defined it, and what ended it.

The facts behind the welcome chapter's timeline, kept as data so the figure, the table and the
tests all read the same source.

Note the direction of history: TLS *succeeded* SSL. SSL 2.0 and 3.0 are the deprecated ones
(prohibited by RFC 6176 and RFC 7568); TLS 1.0 and 1.1 followed them into retirement with
RFC 8996 (2021); TLS 1.2 and 1.3 are what the web speaks today.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

__all__ = ["PROTOCOLS", "ProtocolVersion", "timeline_table"]


@dataclass(frozen=True)
class ProtocolVersion:
    name: str
    year: int  # published
    defined_by: str
    retired: int | None  # year it was formally deprecated or prohibited; None: in use
    retired_by: str | None
    downfall: str  # the attack or weakness that ended it (or what it fixed, for current ones)
    label: str  # the same in a few words, for the figure


PROTOCOLS: tuple[ProtocolVersion, ...] = (
    ProtocolVersion("SSL 2.0", 1995, "Netscape (no RFC)", 2011, "RFC 6176",
                    "design flaws: no handshake integrity, weak MACs; DROWN (2016) still used it against servers", "design flaws; DROWN (2016)"),
    ProtocolVersion("SSL 3.0", 1996, "Netscape; RFC 6101 (historic)", 2015, "RFC 7568",
                    "POODLE (2014): its CBC padding is not authenticated", "POODLE (2014)"),
    ProtocolVersion("TLS 1.0", 1999, "RFC 2246", 2021, "RFC 8996",
                    "BEAST (2011): predictable CBC IVs; MD5/SHA-1 in the handshake", "BEAST (2011)"),
    ProtocolVersion("TLS 1.1", 2006, "RFC 4346", 2021, "RFC 8996",
                    "no AEAD ciphers, MD5/SHA-1 PRF; Lucky 13 (2013) on its CBC MAC-then-encrypt", "Lucky 13 (2013); MD5/SHA-1"),
    ProtocolVersion("TLS 1.2", 2008, "RFC 5246", None, None,
                    "still fine with AEAD suites and ECDHE; legacy options (static RSA, CBC) must be turned off", "in use, with AEAD suites only"),
    ProtocolVersion("TLS 1.3", 2018, "RFC 8446", None, None,
                    "removed static RSA, CBC and renegotiation; one round trip; forward secrecy always", "in use: the modern default"),
)


def timeline_table(protocols: tuple[ProtocolVersion, ...] = PROTOCOLS) -> "_Table":
    """The timeline as a table (rich in a notebook, plain text elsewhere)."""
    return _Table(protocols)


class _Table:
    def __init__(self, protocols: tuple[ProtocolVersion, ...]) -> None:
        self.protocols = protocols

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (p.name, str(p.year), p.defined_by,
             f"{p.retired} ({p.retired_by})" if p.retired else "in use",
             p.downfall)
            for p in self.protocols
        ]

    def __repr__(self) -> str:
        head = ("version", "year", "defined by", "retired", "what ended it / why it holds")
        rows = [head, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(r)) for r in rows
        )

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("version", "year", "defined by", "retired", "what ended it / why it holds"))
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self._rows()
        )
        return f"<table class='tlslab-timeline'><tr>{head}</tr>{body}</table>"
