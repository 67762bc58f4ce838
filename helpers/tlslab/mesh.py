"""A small zero-trust mesh: local services that know each other only by certificate.

Each service is an HTTPS server on 127.0.0.1 that demands a client certificate (mutual TLS), and
a client that presents its own. A service's identity is a SPIFFE ID, ``spiffe://course.test/orders``,
carried in its certificate as the one URI SAN of an X.509-SVID. A :class:`Policy` says who may call
whom; the *called* service reads the caller's SPIFFE ID from the verified certificate and decides::

    >>> with Mesh() as mesh:                                  # doctest: +SKIP
    ...     mesh.call("frontend", "orders")
    <CallResult frontend → orders: allowed (HTTP 200)>
    >>> mesh.call("frontend", "payments")                     # doctest: +SKIP
    <CallResult frontend → payments: denied by policy (HTTP 403): the policy has no edge frontend → payments>
    >>> mesh.call("intruder", "orders")                       # doctest: +SKIP
    <CallResult intruder → orders: refused by TLS: unknown_ca (orders, the server, refused)>

Two different doors can close on a caller:

* **TLS** (authentication): the handshake fails, the request is never sent. The intruder's
  certificate *says* ``spiffe://course.test/frontend``, but the Rogue CA signed it, and no service
  trusts that CA: ``unknown_ca``. A name in a certificate means nothing without a trusted signature.
* **policy** (authorization): the handshake succeeds, the callee knows exactly who calls, and
  answers ``403 Forbidden`` because its policy has no edge from that caller.

A third, rarer one: the certificate is signed by the mesh CA but breaks the X.509-SVID rules
(:func:`svid_id` says which); the callee answers 403 as well, with that reason.

Every call is logged (``mesh.log``): caller, callee, allowed or denied, and why.
:meth:`Mesh.matrix` calls every pair and returns the allowed/denied matrix; ``plots.mesh_matrix``
draws it as a heat map.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, Union

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .client import HandshakeReport, connect
from .explain import Diagnosis
from .pki import COURSE_VALIDITY, CertificateAuthority, Credential, PKIError, _general_names, _name, generate_key
from .servers import ServerConnection, TLSServer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_EDGES",
    "INTRUDER",
    "SERVICES",
    "SVID_DEFECTS",
    "TRUST_DOMAIN",
    "CallLog",
    "CallMatrix",
    "CallResult",
    "Decision",
    "Mesh",
    "Policy",
    "SVIDError",
    "Service",
    "issue_svid",
    "parse_spiffe_id",
    "spiffe_id",
    "svid_id",
    "svid_problems",
]

TRUST_DOMAIN = "course.test"
SERVICES: tuple[str, ...] = ("frontend", "orders", "payments")
INTRUDER = "intruder"
#: Who may call whom by default: the frontend calls orders, orders calls payments. Nothing else.
DEFAULT_EDGES: tuple[tuple[str, str], ...] = (("frontend", "orders"), ("orders", "payments"))
#: What the intruder's (rogue) certificate claims to be.
INTRUDER_CLAIMS = "frontend"
#: The caller's name in the log when it presents no certificate.
ANONYMOUS = "(no certificate)"

SVID_DEFECTS = ("two-uri-sans", "no-uri-san", "ca", "no-digital-signature")


class SVIDError(ValueError):
    """A certificate, or a SPIFFE ID, that breaks the SPIFFE rules; the message says which."""


# --- SPIFFE IDs and X.509-SVIDs ---------------------------------------------------------------

_TRUST_DOMAIN_CHARS = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")


def spiffe_id(service: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """``spiffe://course.test/orders`` for the service ``orders`` (checked against the SPIFFE rules)."""
    value = f"spiffe://{trust_domain}/{service}"
    parse_spiffe_id(value)
    return value


def parse_spiffe_id(value: str) -> tuple[str, str]:
    """Split a SPIFFE ID into ``(trust domain, path)``, or raise :class:`SVIDError` saying why it
    is not one: the scheme is ``spiffe``; the trust domain is lower-case letters, digits, dots,
    dashes and underscores (no port, no user); the path is non-empty segments of letters, digits,
    dots, dashes and underscores (not ``.`` or ``..``); no query, no fragment."""
    if not isinstance(value, str):
        raise SVIDError(f"a SPIFFE ID is a string, not {type(value).__name__}")
    if len(value.encode()) > 2048:
        raise SVIDError("a SPIFFE ID is at most 2048 bytes long")
    if not value.startswith("spiffe://"):
        scheme = value.split("://", 1)[0] if "://" in value else "(none)"
        raise SVIDError(f"{value!r} is not a SPIFFE ID: its scheme must be 'spiffe', not {scheme!r}")
    rest = value[len("spiffe://"):]
    if "?" in rest or "#" in rest:
        raise SVIDError(f"{value!r} is not a SPIFFE ID: no query or fragment is allowed")
    domain, slash, path = rest.partition("/")
    if not domain:
        raise SVIDError(f"{value!r} is not a SPIFFE ID: the trust domain is empty")
    if not _TRUST_DOMAIN_CHARS.match(domain):
        raise SVIDError(
            f"{value!r} is not a SPIFFE ID: the trust domain {domain!r} may hold only lower-case letters, "
            "digits, '.', '-' and '_' (no port, no user name)"
        )
    if not slash or not path:
        raise SVIDError(f"{value!r} names a trust domain, not a workload: a workload's SPIFFE ID has a path")
    for segment in path.split("/"):
        if not segment:
            raise SVIDError(f"{value!r} is not a SPIFFE ID: its path has an empty segment (or ends with '/')")
        if segment in (".", ".."):
            raise SVIDError(f"{value!r} is not a SPIFFE ID: '.' and '..' are not allowed in the path")
        if not _SEGMENT_CHARS.match(segment):
            raise SVIDError(
                f"{value!r} is not a SPIFFE ID: path segment {segment!r} may hold only letters, digits, '.', '-' and '_'"
            )
    return domain, "/" + path


CertificateLike = Union[x509.Certificate, Credential, bytes, str]


def _as_certificate(cert: CertificateLike) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, Credential):
        return cert.certificate
    if isinstance(cert, str):
        cert = cert.encode()
    if isinstance(cert, bytes):
        try:
            if cert.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(cert)
            return x509.load_der_x509_certificate(cert)
        except ValueError as exc:
            raise SVIDError(f"not a certificate ({exc})") from None
    raise TypeError(f"expected a certificate, a Credential, PEM or DER bytes, not {type(cert).__name__}")


def _uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.UniformResourceIdentifier)]


def svid_problems(cert: CertificateLike) -> list[str]:
    """Every way ``cert`` breaks the X.509-SVID rules for a workload (leaf) certificate; ``[]`` if none.

    The rules: exactly one URI SAN, and it is a SPIFFE ID; CA=false; key usage includes
    digitalSignature and excludes keyCertSign and cRLSign.
    """
    certificate = _as_certificate(cert)
    problems: list[str] = []
    uris = _uri_sans(certificate)
    if not uris:
        problems.append("it has no URI SAN, so it carries no SPIFFE ID (an X.509-SVID has exactly one)")
    elif len(uris) > 1:
        problems.append(
            f"it has {len(uris)} URI SANs ({', '.join(uris)}); an X.509-SVID has exactly one, "
            "so it would be ambiguous who this is"
        )
    else:
        try:
            parse_spiffe_id(uris[0])
        except SVIDError as exc:
            problems.append(str(exc))
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("it is a CA certificate (CA=true); a workload's SVID must have CA=false")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            problems.append("its key usage lacks digitalSignature, which an X.509-SVID leaf must have")
        if usage.key_cert_sign or usage.crl_sign:
            problems.append("its key usage allows signing certificates or CRLs (keyCertSign/cRLSign); a leaf SVID must not")
    except x509.ExtensionNotFound:
        problems.append("it has no key usage extension; an X.509-SVID leaf must set digitalSignature")
    return problems


def svid_id(cert: CertificateLike) -> str:
    """The SPIFFE ID of an X.509-SVID, after checking the SVID rules; :class:`SVIDError` says
    which rule a certificate breaks (two URI SANs, CA=true, no digitalSignature, …)."""
    problems = svid_problems(cert)
    if problems:
        raise SVIDError("not a valid X.509-SVID: " + "; ".join(problems))
    return _uri_sans(_as_certificate(cert))[0]


def issue_svid(
    ca: CertificateAuthority,
    service: str,
    *,
    trust_domain: str = TRUST_DOMAIN,
    hosts: Sequence[str] = (),
    usage: str = "both",
    defect: str | None = None,
    key_type: str = "ecdsa",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Credential:
    """An X.509-SVID for ``service`` (a name, or a whole SPIFFE ID) issued by ``ca``.

    ``hosts`` adds DNS names/IP addresses (SVIDs may carry other SAN types; the course's servers
    use ``localhost``/``127.0.0.1`` so ordinary clients such as curl can check them). ``usage``:
    ``"both"`` (serve and call), ``"client"`` or ``"server"``. ``defect``: one of
    :data:`SVID_DEFECTS`, for a certificate that breaks the SVID rules on purpose —
    ``"two-uri-sans"``, ``"no-uri-san"``, ``"ca"`` (CA=true), ``"no-digital-signature"``.
    """
    sid = service if service.startswith("spiffe://") else spiffe_id(service, trust_domain)
    common_name = sid.rsplit("/", 1)[-1]
    dates = {"not_before": not_before, "not_after": not_after}
    if defect is None:
        return ca.issue_cert(sid, *hosts, common_name=common_name, usage=usage, key_type=key_type, **dates)  # type: ignore[arg-type]
    if defect == "two-uri-sans":
        second = spiffe_id("admin", parse_spiffe_id(sid)[0])
        return ca.issue_cert(sid, second, *hosts, common_name=common_name, usage=usage, key_type=key_type, **dates)  # type: ignore[arg-type]
    if defect == "no-uri-san":
        return ca.issue_cert(f"{common_name}.{parse_spiffe_id(sid)[0]}", *hosts, common_name=common_name, usage=usage,
                             key_type=key_type, **dates)  # type: ignore[arg-type]
    if defect in ("ca", "no-digital-signature"):
        return _custom_leaf(ca, sid, hosts, usage=usage, key_type=key_type, is_ca=defect == "ca",
                            digital_signature=defect != "no-digital-signature", **dates)
    raise PKIError(f"unknown SVID defect {defect!r}; choose one of {', '.join(SVID_DEFECTS)}")


def _custom_leaf(
    ca: CertificateAuthority,
    sid: str,
    hosts: Sequence[str],
    *,
    usage: str,
    key_type: str,
    is_ca: bool,
    digital_signature: bool,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> Credential:
    """A certificate the course's PKI would never make: CA=true, or no digitalSignature."""
    key = generate_key(key_type)
    eku = {"client": [ExtendedKeyUsageOID.CLIENT_AUTH], "server": [ExtendedKeyUsageOID.SERVER_AUTH]}.get(
        usage, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(sid.rsplit("/", 1)[-1]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or COURSE_VALIDITY[0])
        .not_valid_after(not_after or COURSE_VALIDITY[1])
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature, key_agreement=not digital_signature, key_cert_sign=is_ca,
                crl_sign=is_ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName(_general_names([sid, *hosts])), critical=False)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    )
    return Credential(ca._sign(builder), key, ca.intermediates)


# --- the policy -------------------------------------------------------------------------------


def _service_name(value: str, trust_domain: str) -> str:
    """``orders`` from ``orders`` or ``spiffe://course.test/orders``."""
    if value.startswith("spiffe://"):
        domain, path = parse_spiffe_id(value)
        if domain != trust_domain:
            raise SVIDError(f"{value!r} belongs to trust domain {domain!r}, not {trust_domain!r}")
        return path[1:]
    return value


@dataclass(frozen=True)
class Decision:
    """What a called service decided about one request: allowed or not, and why in one line.

    ``stage``: ``"policy"`` (the policy decided) or ``"svid"`` (the certificate is no valid SVID).
    """

    allowed: bool
    reason: str
    stage: str = "policy"
    caller_id: str | None = None


class Policy:
    """Who may call whom: a set of allowed edges ``caller → callee``; everything else is denied.

    >>> policy = Policy([("frontend", "orders")])
    >>> policy.allows("frontend", "orders"), policy.allows("orders", "frontend")
    (True, False)
    >>> policy.allow("orders", "payments")
    Policy(allow frontend → orders, orders → payments; deny everything else)

    Names or SPIFFE IDs both work: ``policy.allows("spiffe://course.test/frontend", "orders")``.
    """

    def __init__(self, edges: Iterable[tuple[str, str]] = (), *, trust_domain: str = TRUST_DOMAIN) -> None:
        self.trust_domain = trust_domain
        self._edges: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        for caller, callee in edges:
            self.allow(caller, callee)

    @classmethod
    def default(cls) -> "Policy":
        """The course's mesh policy: frontend → orders, orders → payments."""
        return cls(DEFAULT_EDGES)

    def _edge(self, caller: str, callee: str) -> tuple[str, str]:
        return _service_name(caller, self.trust_domain), _service_name(callee, self.trust_domain)

    def allow(self, caller: str, callee: str) -> "Policy":
        """Let ``caller`` call ``callee``; returns the policy (calls chain)."""
        with self._lock:
            self._edges.add(self._edge(caller, callee))
        return self

    def deny(self, caller: str, callee: str) -> "Policy":
        """Take the edge ``caller → callee`` away (nothing happens if there was none)."""
        with self._lock:
            self._edges.discard(self._edge(caller, callee))
        return self

    def set(self, caller: str, callee: str, allowed: bool) -> "Policy":
        return self.allow(caller, callee) if allowed else self.deny(caller, callee)

    def toggle(self, caller: str, callee: str) -> bool:
        """Flip one edge; returns whether it is now allowed."""
        now = not self.allows(caller, callee)
        self.set(caller, callee, now)
        return now

    def allows(self, caller: str, callee: str) -> bool:
        with self._lock:
            return self._edge(caller, callee) in self._edges

    @property
    def edges(self) -> list[tuple[str, str]]:
        """The allowed edges, sorted."""
        with self._lock:
            return sorted(self._edges)

    def copy(self) -> "Policy":
        return Policy(self.edges, trust_domain=self.trust_domain)

    def decide(self, caller_id: str, callee: str) -> Decision:
        """Allow or deny a request from the SPIFFE ID ``caller_id`` to the service ``callee``."""
        try:
            domain, path = parse_spiffe_id(caller_id)
        except SVIDError as exc:
            return Decision(False, str(exc), "svid", caller_id)
        if domain != self.trust_domain:
            return Decision(False, f"{caller_id} is from trust domain {domain!r}, not {self.trust_domain!r}",
                            "policy", caller_id)
        caller = path[1:]
        if self.allows(caller, callee):
            return Decision(True, f"the policy allows {caller} → {callee}", "policy", caller_id)
        return Decision(False, f"the policy has no edge {caller} → {callee}", "policy", caller_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.edges == other.edges and self.trust_domain == other.trust_domain

    def __len__(self) -> int:
        return len(self.edges)

    def __contains__(self, edge: object) -> bool:
        return isinstance(edge, tuple) and len(edge) == 2 and self.allows(*edge)  # type: ignore[misc]

    def __str__(self) -> str:
        edges = self.edges
        lines = [f"allow  {a} → {b}" for a, b in edges]
        lines.append("deny   everything else")
        return "\n".join(lines)

    def __repr__(self) -> str:
        edges = ", ".join(f"{a} → {b}" for a, b in self.edges) or "nothing"
        return f"Policy(allow {edges}; deny everything else)"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:#27ae60'><b>allow</b></td><td><code>{html.escape(a)}</code> → "
            f"<code>{html.escape(b)}</code></td></tr>"
            for a, b in self.edges
        )
        rows += "<tr><td style='color:#c0392b'><b>deny</b></td><td>everything else</td></tr>"
        return f"<table class='tlslab-policy'>{rows}</table>"


Authorizer = Callable[[x509.Certificate, str], Union[Decision, bool]]


# --- calls, their log and the matrix ----------------------------------------------------------

_OUTCOMES = {
    "allowed": "allowed",
    "policy": "denied by policy",
    "svid": "denied: invalid SVID",
    "tls": "refused by TLS",
    "error": "failed",
}


@dataclass
class CallResult:
    """One call ``caller → callee`` and how it ended.

    ``stage`` says where it ended: ``"allowed"``; ``"tls"`` (the handshake failed: no request was
    sent; ``diagnosis`` says who refused and why); ``"policy"`` or ``"svid"`` (the callee answered
    HTTP 403 with ``reason``); ``"error"`` (anything else, e.g. the authorizer crashed: HTTP 500).
    """

    caller: str
    callee: str
    stage: str
    reason: str
    status: int | None = None
    caller_id: str | None = None  # the SPIFFE ID the caller's certificate claims
    callee_id: str | None = None  # the SPIFFE ID the callee's certificate proved (after TLS)
    diagnosis: Diagnosis | None = None
    reply: str = ""
    report: HandshakeReport | None = field(default=None, repr=False, compare=False)

    @property
    def allowed(self) -> bool:
        return self.stage == "allowed"

    @property
    def outcome(self) -> str:
        """``allowed``, ``denied by policy``, ``denied: invalid SVID``, ``refused by TLS`` or ``failed``."""
        return _OUTCOMES.get(self.stage, self.stage)

    @property
    def refused_by(self) -> str | None:
        """Which side said no: the ``callee`` (server) or the ``caller`` (client); ``None`` if allowed."""
        if self.allowed:
            return None
        if self.stage == "tls" and self.diagnosis is not None:
            return self.callee if self.diagnosis.who == "server" else self.caller
        return self.callee

    def __bool__(self) -> bool:
        return self.allowed

    def summary(self) -> str:
        """One line: what happened and why."""
        if self.allowed:
            return f"{self.caller} → {self.callee}: allowed (HTTP {self.status})"
        if self.stage == "tls" and self.diagnosis is not None:
            d = self.diagnosis
            side = "the server" if d.who == "server" else "the client"
            return f"{self.caller} → {self.callee}: refused by TLS: {d.key} ({self.refused_by}, {side}, refused)"
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{self.caller} → {self.callee}: {self.outcome}{status}: {self.reason}"

    def __repr__(self) -> str:
        return f"<CallResult {self.summary()}>"

    def rows(self) -> list[tuple[str, str]]:
        rows = [("call", f"{self.caller} → {self.callee}"), ("outcome", self.outcome)]
        if self.caller_id:
            rows.append(("caller's certificate says", self.caller_id))
        if self.callee_id:
            rows.append(("callee proved it is", self.callee_id))
        if self.status is not None:
            rows.append(("HTTP status", str(self.status)))
        if self.diagnosis is not None:
            d = self.diagnosis
            rows += [("who refused", f"{self.refused_by} (the {d.who})"), ("what", d.what), ("why", d.why),
                     ("how to fix", d.fix), ("OpenSSL says", d.code)]
        else:
            rows.append(("why", self.reason))
        return rows

    def _repr_html_(self) -> str:
        colour = _CELL_COLOURS.get(self.stage, "#7f8c8d")
        mark = "✓" if self.allowed else "✗"
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()[1:]
        )
        return (
            f"<div class='tlslab-call' style='border-left:4px solid {colour};padding-left:.6em'>"
            f"<b>{mark} {html.escape(self.caller)} → {html.escape(self.callee)}</b><table>{body}</table></div>"
        )


_CELL_COLOURS = {"allowed": "#27ae60", "policy": "#e67e22", "svid": "#8e44ad", "tls": "#c0392b", "error": "#7f8c8d"}


class CallLog(list):
    """Every call the mesh made, in order: caller, callee, allowed or denied, why."""

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        out = []
        for number, call in enumerate(self, 1):
            if call.stage == "tls" and call.diagnosis is not None:
                why = f"TLS: {call.diagnosis.key} — {call.refused_by} ({call.diagnosis.who}) refused"
            elif call.allowed:
                why = call.reason
            else:
                why = f"HTTP {call.status}: {call.reason}" if call.status else call.reason
            out.append((str(number), call.caller, call.callee, "allowed" if call.allowed else "denied", why))
        return out

    def __repr__(self) -> str:
        if not self:
            return "<CallLog: no calls yet>"
        header = ("#", "caller", "callee", "verdict", "why")
        rows = [header, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:4])) + "  " + r[4] for r in rows
        )

    def _repr_html_(self) -> str:
        if not self:
            return "<p><i>No calls yet.</i></p>"
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("#", "caller", "callee", "verdict", "why"))
        body = ""
        for call, (number, caller, callee, verdict, why) in zip(self, self.rows()):
            colour = _CELL_COLOURS.get(call.stage, "#7f8c8d")
            body += (
                f"<tr><td>{number}</td><td><code>{html.escape(caller)}</code></td><td><code>{html.escape(callee)}</code></td>"
                f"<td style='color:{colour}'><b>{verdict}</b></td><td style='text-align:left'>{html.escape(why)}</td></tr>"
            )
        return f"<table class='tlslab-call-log'><tr>{head}</tr>{body}</table>"


@dataclass
class CallMatrix:
    """The outcome of every call ``caller → callee`` (rows: callers; columns: callees).

    Self-calls are not made (their cell is ``None``).
    """

    callers: tuple[str, ...]
    callees: tuple[str, ...]
    results: dict[tuple[str, str], CallResult]
    policy_edges: tuple[tuple[str, str], ...] = ()

    def cell(self, caller: str, callee: str) -> CallResult | None:
        return self.results.get((caller, callee))

    def outcome(self, caller: str, callee: str) -> str:
        """``allowed``, ``policy``, ``svid``, ``tls``, ``error`` — or ``self`` on the diagonal."""
        found = self.cell(caller, callee)
        return "self" if found is None else found.stage

    @property
    def allowed(self) -> set[tuple[str, str]]:
        """The pairs whose call went through."""
        return {pair for pair, call in self.results.items() if call.allowed}

    def label(self, caller: str, callee: str) -> str:
        """The short text of one cell: ``allowed``, ``403 policy``, ``TLS: unknown_ca``, ``—``."""
        found = self.cell(caller, callee)
        if found is None:
            return "—"
        if found.allowed:
            return "allowed"
        if found.stage == "tls" and found.diagnosis is not None:
            return f"TLS: {found.diagnosis.key}"
        if found.stage in ("policy", "svid"):
            return f"{found.status} {found.stage}"
        return found.stage

    def __repr__(self) -> str:
        corner = "caller \\ callee"
        table = [[corner, *self.callees]] + [[caller, *(self.label(caller, c) for c in self.callees)] for caller in self.callers]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table)

    def _repr_html_(self) -> str:
        head = "<th>caller ＼ callee</th>" + "".join(f"<th><code>{html.escape(c)}</code></th>" for c in self.callees)
        body = ""
        for caller in self.callers:
            cells = ""
            for callee in self.callees:
                stage = self.outcome(caller, callee)
                colour = _CELL_COLOURS.get(stage, "#bdc3c7")
                found = self.cell(caller, callee)
                title = html.escape(found.summary()) if found else "no self-calls"
                cells += (f"<td title='{title}' style='background:{colour};color:white;text-align:center;"
                          f"padding:.2em .6em'>{html.escape(self.label(caller, callee))}</td>")
            body += f"<tr><th style='text-align:left'><code>{html.escape(caller)}</code></th>{cells}</tr>"
        return f"<table class='tlslab-mesh-matrix'><tr>{head}</tr>{body}</table>"

    def plot(self) -> "Figure":
        from . import plots

        return plots.mesh_matrix(self)


# --- the services and the mesh ----------------------------------------------------------------


@dataclass
class Service:
    """One service of the mesh: its SVID (presented both when serving and when calling), the
    CA it trusts, and its HTTPS server."""

    name: str
    spiffe_id: str
    credential: Credential
    trusts: CertificateAuthority
    server: TLSServer = field(repr=False)

    def __repr__(self) -> str:
        issuer = self.credential.certificate.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return f"<Service {self.name!r} {self.spiffe_id} issued by {issuer[0].value if issuer else '?'}>"


def _http_response(status: int, reason_phrase: str, body: str, headers: dict[str, str]) -> bytes:
    data = body.encode()
    head = [f"HTTP/1.1 {status} {reason_phrase}", "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(data)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def _parse_http(reply: bytes) -> tuple[int | None, dict[str, str], str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, {}, reply.decode("utf-8", "replace")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body.decode("utf-8", "replace")


class Mesh:
    """A running mesh of services; a context manager that starts and stops them all.

    ``policy``: who may call whom (default :meth:`Policy.default`). ``services``: their names.
    ``intruder``: add a service whose certificate comes from a *Rogue CA* and claims to be
    ``frontend``. ``authorize``: replace the policy check with your own function
    ``(peer certificate, callee name) -> bool or Decision`` (the lab's exercise); raising
    :class:`SVIDError` in it denies with that reason.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        services: Sequence[str] = SERVICES,
        intruder: bool = True,
        trust_domain: str = TRUST_DOMAIN,
        authorize: Authorizer | None = None,
        ca: CertificateAuthority | None = None,
        name: str = "mesh",
    ) -> None:
        if not services:
            raise ValueError("a mesh needs at least one service")
        if len(set(services)) != len(services):
            raise ValueError("service names must be different")
        if intruder and INTRUDER in services:
            raise ValueError(f"{INTRUDER!r} is the intruder's name; do not use it for a service")
        for service in services:
            spiffe_id(service, trust_domain)  # a name that makes no SPIFFE ID is refused here
        self.name = name
        self.trust_domain = trust_domain
        self.policy = policy if policy is not None else Policy.default()
        self.authorizer = authorize
        self.ca = ca or CertificateAuthority(f"{trust_domain} Mesh CA")
        self.rogue_ca = CertificateAuthority("Rogue CA") if intruder else None
        self.log = CallLog()
        self._log_lock = threading.Lock()
        self.services: dict[str, Service] = {}
        for service in services:
            credential = issue_svid(self.ca, service, trust_domain=trust_domain, hosts=("localhost", "127.0.0.1"))
            self.services[service] = self._service(service, credential, self.ca)
        if self.rogue_ca is not None:
            # The intruder claims to be the frontend; only the signature gives it away.
            credential = issue_svid(self.rogue_ca, INTRUDER_CLAIMS, trust_domain=trust_domain,
                                    hosts=("localhost", "127.0.0.1"))
            self.services[INTRUDER] = self._service(INTRUDER, credential, self.ca, client_ca=self.rogue_ca)

    def _service(self, service: str, credential: Credential, trusts: CertificateAuthority,
                 client_ca: CertificateAuthority | None = None) -> Service:
        found = Service(service, svid_id(credential), credential, trusts, server=None)  # type: ignore[arg-type]
        found.server = TLSServer(
            credential, name=f"{self.name}-{service}", client_cert="required", client_ca=client_ca or trusts,
            handler=lambda conn: self._handle(found, conn), io_timeout=5.0,
        )
        return found

    # Lifecycle
    def start(self) -> "Mesh":
        for service in self.services.values():
            service.server.start()
        return self

    def stop(self) -> None:
        for service in self.services.values():
            service.server.stop()

    @property
    def running(self) -> bool:
        return all(service.server.running for service in self.services.values())

    def __enter__(self) -> "Mesh":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Names
    @property
    def callers(self) -> tuple[str, ...]:
        return tuple(self.services)

    @property
    def callees(self) -> tuple[str, ...]:
        return tuple(self.services)

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(f"no service {name!r} in this mesh; it has {', '.join(self.services)}") from None

    def credential(self, name: str) -> Credential:
        """The certificate and key that service ``name`` presents."""
        return self.service(name).credential

    # The callee's side
    def _decide(self, certificate: x509.Certificate | None, callee: str) -> Decision:
        if certificate is None:  # cannot happen with client_cert="required"; refuse anyway
            return Decision(False, "no client certificate", "svid")
        if self.authorizer is not None:
            try:
                verdict = self.authorizer(certificate, callee)
            except SVIDError as exc:
                return Decision(False, str(exc), "svid")
            if isinstance(verdict, Decision):
                return verdict
            who = _uri_sans(certificate)
            caller_id = who[0] if len(who) == 1 else None
            return Decision(bool(verdict), f"your authorize() {'allowed' if verdict else 'denied'} it", "policy", caller_id)
        try:
            caller_id = svid_id(certificate)
        except SVIDError as exc:
            return Decision(False, str(exc), "svid")
        return self.policy.decide(caller_id, callee)

    def _handle(self, service: Service, conn: ServerConnection) -> None:
        conn.read_until(b"\r\n\r\n")
        try:
            decision = self._decide(conn.peer_certificate, service.name)
        except Exception as exc:  # a broken authorizer must not take the service down
            conn.sendall(_http_response(500, "Internal Server Error", f"the authorizer failed: {type(exc).__name__}: {exc}\n",
                                        {"X-Mesh-Stage": "error"}))
            return
        headers = {"X-Mesh-Stage": "allowed" if decision.allowed else decision.stage}
        if decision.caller_id:
            headers["X-Mesh-Caller"] = decision.caller_id
        if decision.allowed:
            body = f"{service.name} served {decision.caller_id or 'the caller'}: {decision.reason}\n"
            conn.sendall(_http_response(200, "OK", body, headers))
        else:
            conn.sendall(_http_response(403, "Forbidden", decision.reason + "\n", headers))

    # The caller's side
    def call(self, caller: str | Credential | None, callee: str, *, path: str = "/", timeout: float = 5.0) -> CallResult:
        """``caller`` calls ``callee`` over mutual TLS; returns (and logs) how it ended.

        ``caller``: a service name, any :class:`Credential` to call with (e.g. a broken SVID,
        an expired certificate), or ``None`` to call without a certificate.
        """
        target = self.service(callee)
        credential: Credential | None
        if caller is None:
            credential, caller_name = None, ANONYMOUS
        elif isinstance(caller, Credential):
            credential, caller_name = caller, caller.common_name
        else:
            credential, caller_name = self.service(caller).credential, caller
        uris = _uri_sans(credential.certificate) if credential is not None else []
        request = (f"GET {path} HTTP/1.1\r\nHost: {callee}.{self.trust_domain}\r\n"
                   f"User-Agent: tlslab-mesh/{caller_name}\r\nConnection: close\r\n\r\n")
        # Every service trusts the mesh CA (the intruder knows it too: a CA certificate is public).
        report = connect(target.server, trust=self.ca, cert=credential, server_hostname="localhost",
                         send=request, timeout=timeout)
        result = CallResult(caller=caller_name, callee=callee, stage="error", reason="", report=report,
                            caller_id=uris[0] if len(uris) == 1 else None)
        if not report.ok:
            assert report.diagnosis is not None
            result.stage = "tls"
            result.diagnosis = report.diagnosis
            result.reason = str(report.diagnosis)
        else:
            peer_uris = [n for n in (report.peer.names if report.peer else ()) if n.startswith("spiffe://")]
            result.callee_id = peer_uris[0] if len(peer_uris) == 1 else None
            status, headers, body = _parse_http(report.reply or b"")
            result.status = status
            result.reply = body
            if status == 200:
                result.stage = "allowed"
                result.reason = body.strip().split(": ", 1)[-1]
            elif status == 403:
                result.stage = headers.get("x-mesh-stage", "policy")
                result.reason = body.strip()
            else:
                result.stage = "error"
                result.reason = body.strip() or f"no HTTP answer (got {len(report.reply or b'')} bytes)"
            result.caller_id = headers.get("x-mesh-caller", result.caller_id)
        with self._log_lock:
            self.log.append(result)
        return result

    def matrix(self, callers: Sequence[str] | None = None, callees: Sequence[str] | None = None) -> CallMatrix:
        """Every caller calls every callee once (no self-calls); the outcomes, as a matrix."""
        callers = tuple(callers or self.callers)
        callees = tuple(callees or self.callees)
        results = {(a, b): self.call(a, b) for a in callers for b in callees if a != b}
        return CallMatrix(callers, callees, results, tuple(self.policy.edges))

    def clear_log(self) -> None:
        with self._log_lock:
            self.log.clear()

    # For curl and friends
    def curl_command(self, caller: str | None, callee: str) -> list[str]:
        """The curl command that calls ``callee`` as ``caller`` (``None``: without a certificate)."""
        target = self.service(callee)
        args = ["curl", "--cacert", str(self.ca.cert_file())]
        if caller is not None:
            cert_file, key_file = self.credential(caller).files()
            args += ["--cert", str(cert_file), "--key", str(key_file)]
        return [*args, f"https://localhost:{target.server.port}/"]

    def __repr__(self) -> str:
        names = ", ".join(n for n in self.services if n != INTRUDER)
        extra = f" + {INTRUDER}" if INTRUDER in self.services else ""
        state = "running" if self.running else "stopped"
        return f"<Mesh {self.name!r}: {names}{extra}; {len(self.policy)} allowed edge(s); {state}>"

    def _repr_html_(self) -> str:
        rows = ""
        for service in self.services.values():
            issuer = service.credential.certificate.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            rows += (f"<tr><td><code>{html.escape(service.name)}</code></td><td><code>{html.escape(service.spiffe_id)}</code></td>"
                     f"<td>{html.escape(str(issuer[0].value) if issuer else '?')}</td></tr>")
        return (
            f"<div class='tlslab-mesh'><b>Mesh {html.escape(self.name)}</b>"
            "<table><tr><th>service</th><th>its certificate says (SPIFFE ID)</th><th>issued by</th></tr>"
            f"{rows}</table><b>Policy</b>{self.policy._repr_html_()}</div>"
        )
