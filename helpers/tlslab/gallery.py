"""A gallery of broken servers: the offline, TLS 1.3 answer to badssl.com.

Each case is a live server on 127.0.0.1 with exactly one thing wrong, and the diagnosis a
verifying client must reach::

    >>> result = run_case("expired")
    >>> result.diagnosis.key, result.refused_by
    ('expired', 'client')
    >>> run_all().all_as_expected
    True

``run_case`` starts a fresh server for the case, makes one handshake with :func:`~tlslab.client.connect`
(a client that trusts the gallery's root CA and asks for ``localhost``), stops the server, and
returns a :class:`GalleryResult`: the handshake report, the diagnosis, the chain of trust and the
link that broke (``result.plot()`` draws it).

Two diagnoses need more than OpenSSL's verify code. OpenSSL says *"unable to get local issuer
certificate"* (error 20) both when a server forgot its intermediate and when its chain leads to a
root the client does not trust; what differs is *where* the walk up the chain stopped (``openssl
verify`` prints it: ``error 20 at 0 depth`` or ``at 1 depth``). The client records the
certificates the server really sent (from the handshake's Certificate message) and tells the two
apart with it, see :func:`refine_diagnosis`.

The certificate authorities and certificates are made once and reused (key generation is the slow
part); every run gets a fresh server. Certificate dates are fixed, so outputs are the same from one
run to the next.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import ssl
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .client import HandshakeReport, client_context, connect
from .explain import Diagnosis
from .pki import CertificateAuthority, Credential, _write_private, describe_key, private_folder, self_signed_cert
from .servers import TLSServer
from .verify import ChainVerdict, verify_chain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CASES",
    "HOST",
    "BrokenLink",
    "GalleryCase",
    "GalleryPKI",
    "GalleryResult",
    "GalleryTable",
    "client_context_for",
    "gallery_pki",
    "refine_diagnosis",
    "run_all",
    "run_case",
    "serve",
]

#: The name every gallery client asks for (SNI) and checks the certificate against.
HOST = "localhost"

_UTC = dt.timezone.utc
EXPIRED = (dt.datetime(2024, 1, 1, tzinfo=_UTC), dt.datetime(2025, 1, 1, tzinfo=_UTC))
NOT_YET_VALID = (dt.datetime(2040, 1, 1, tzinfo=_UTC), dt.datetime(2045, 1, 1, tzinfo=_UTC))
WRONG_HOST = "wrong.host.test"


# --- the certificate authorities, made once ---------------------------------------------------


class GalleryPKI:
    """The CAs and certificates behind the gallery: a trusted root with its issuing intermediate,
    and an *unknown* root (with its own intermediate) that no gallery client trusts.

    Certificates are made on first use and then reused; the revocation list is re-signed on each
    use, so it always lists what the issuing CA has revoked.
    """

    def __init__(self, root: CertificateAuthority, issuing: CertificateAuthority) -> None:
        self.root = root
        self.issuing = issuing
        self._credentials: dict[str, Credential] = {}
        self._lock = threading.Lock()

    @property
    def unknown_root(self) -> CertificateAuthority:
        return _unknown_cas()[0]

    @property
    def unknown_issuing(self) -> CertificateAuthority:
        return _unknown_cas()[1]

    def credential(self, name: str) -> Credential:
        """The server certificate (and key) of case ``name``, made once."""
        case = _case(name)
        with self._lock:
            found = self._credentials.get(name)
            if found is None:
                found = self._credentials[name] = case.build(self)
            return found

    def crl_pem(self) -> bytes:
        """The issuing CA's current revocation list (PEM)."""
        return self.issuing.crl_pem()

    def crl_file(self) -> Path:
        """The issuing CA's CRL as a file in the private folder (``ssl`` loads CRLs from files)."""
        stem = f"gallery-{self.issuing.certificate.serial_number:x}"[:60]
        return _write_private(private_folder() / f"{stem}.crl.pem", self.crl_pem(), 0o644)

    def root_of(self, certificate: x509.Certificate) -> x509.Certificate | None:
        """The root (trusted or unknown) at the top of ``certificate``'s chain, if it is one of ours."""
        for root in (self.root.certificate, self.unknown_root.certificate):
            if certificate.issuer == root.subject:
                return root
        return None

    def __repr__(self) -> str:
        return f"<GalleryPKI root {self.root.name!r}, issuing CA {self.issuing.name!r}>"


_pki_lock = threading.Lock()
_unknown: tuple[CertificateAuthority, CertificateAuthority] | None = None
_pkis: dict[int, tuple[CertificateAuthority, GalleryPKI]] = {}


def _unknown_cas() -> tuple[CertificateAuthority, CertificateAuthority]:
    global _unknown
    with _pki_lock:
        if _unknown is None:
            root = CertificateAuthority("Unknown Root CA")
            _unknown = (root, root.intermediate("Unknown Issuing CA"))
        return _unknown


def gallery_pki(ca: CertificateAuthority | None = None) -> GalleryPKI:
    """The gallery's CAs: its own (``ca=None``), or built on ``ca``.

    A root ``ca`` gets an issuing intermediate made for the gallery; an intermediate ``ca`` issues
    the certificates itself (and its root is the one the client trusts). Made once per CA.
    """
    if ca is not None and not isinstance(ca, CertificateAuthority):
        raise TypeError(f"ca must be a CertificateAuthority (or None for the gallery's own), not {type(ca).__name__}")
    with _pki_lock:
        key = id(ca)
        found = _pkis.get(key)
        if found is not None and found[0] is ca:
            return found[1]
        if ca is None:
            root = CertificateAuthority("TLS Lab Gallery Root CA")
            pki = GalleryPKI(root, root.intermediate("TLS Lab Gallery Issuing CA"))
        elif ca.is_root:
            pki = GalleryPKI(ca, ca.intermediate("TLS Lab Gallery Issuing CA"))
        else:
            pki = GalleryPKI(ca.root, ca)
        _pkis[key] = (ca, pki)  # type: ignore[assignment]
        return pki


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryCase:
    """One broken server (or the control): how to build it, and what a client must conclude.

    ``expected``: the diagnosis key (``None`` for the control, which must succeed);
    ``refused_by``: the side that must refuse. ``send_intermediates=False``: the server sends its
    leaf alone. ``legacy``: the server runs at OpenSSL security level 0 (an insecure demo setting,
    needed to load a key OpenSSL otherwise rejects). ``check_crl``: the client checks the CA's
    revocation list.
    """

    name: str
    description: str
    expected: str | None
    refused_by: str | None
    build: Callable[[GalleryPKI], Credential] = field(repr=False, compare=False)
    send_intermediates: bool = True
    legacy: bool = False
    check_crl: bool = False


def _issue(p: GalleryPKI, **kwargs: object) -> Credential:
    return p.issuing.issue_server_cert(HOST, **kwargs)  # type: ignore[arg-type]


def _revoked(p: GalleryPKI) -> Credential:
    credential = _issue(p)
    p.issuing.revoke(credential)
    return credential


_CASE_LIST = [
    GalleryCase("control", "A correct server: a certificate for localhost from the trusted CA, sent with its intermediate.",
                None, None, _issue),
    GalleryCase("expired", "The server's certificate expired on 2025-01-01.", "expired", "client",
                lambda p: _issue(p, not_before=EXPIRED[0], not_after=EXPIRED[1])),
    GalleryCase("not_yet_valid", "The server's certificate only becomes valid on 2040-01-01.", "not_yet_valid", "client",
                lambda p: _issue(p, not_before=NOT_YET_VALID[0], not_after=NOT_YET_VALID[1])),
    GalleryCase("wrong_host", f"The certificate is for {WRONG_HOST}, but the client asked for {HOST}.",
                "hostname_mismatch", "client", lambda p: p.issuing.issue_server_cert(WRONG_HOST)),
    GalleryCase("self_signed", "The certificate is signed by its own key: it vouches for itself.", "self_signed", "client",
                lambda p: self_signed_cert(HOST)),
    GalleryCase("unknown_root", "The chain is complete, but it ends at a root CA the client has never heard of.",
                "unknown_root", "client", lambda p: p.unknown_issuing.issue_server_cert(HOST)),
    GalleryCase("missing_intermediate", "The server sends its own certificate, not the intermediate CA that signed it.",
                "missing_intermediate", "client", _issue, send_intermediates=False),
    GalleryCase("wrong_usage", "A client-only certificate (extended key usage clientAuth) used by a server.",
                "wrong_usage", "client", lambda p: _issue(p, usage="client")),
    GalleryCase("revoked", "The CA revoked the certificate; the client checks the CA's revocation list (CRL).",
                "revoked", "client", _revoked, check_crl=True),
    GalleryCase("key_too_small", "An RSA 1024 key: the server needs an insecure demo setting just to load it.",
                "key_too_small", "client", lambda p: _issue(p, key_type="rsa1024"), legacy=True),
]

#: The gallery, by name (the control first).
CASES: dict[str, GalleryCase] = {case.name: case for case in _CASE_LIST}


def _case(name: str | GalleryCase) -> GalleryCase:
    if isinstance(name, GalleryCase):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a gallery case is named by a string, not {type(name).__name__}")
    if name not in CASES:
        raise ValueError(f"no gallery case {name!r}; choose one of {', '.join(CASES)}")
    return CASES[name]


_server_numbers = itertools.count(1)


def _server(case: GalleryCase, pki: GalleryPKI, name: str | None = None) -> TLSServer:
    return TLSServer(
        pki.credential(case.name),
        name=name or f"gallery-{case.name}-{next(_server_numbers)}",
        min_version="1.3",
        send_intermediates=case.send_intermediates,
        legacy=case.legacy,
    )


def serve(name: str, *, ca: CertificateAuthority | None = None) -> TLSServer:
    """Start the server of case ``name`` and leave it running (stop it with ``.stop()``).

    For poking at it with other tools (``openssl s_client``, curl). It runs under the name
    ``gallery-<case>``: starting the same case again replaces it.
    """
    case = _case(name)
    return _server(case, gallery_pki(ca), name=f"gallery-{case.name}").start()


def client_context_for(name: str, *, ca: CertificateAuthority | None = None) -> ssl.SSLContext:
    """The verifying client of case ``name``: it trusts the gallery's root (and checks the CRL
    for the ``revoked`` case)."""
    case = _case(name)
    pki = gallery_pki(ca)
    ctx = client_context(pki.root)
    if case.check_crl:
        pki.credential(case.name)  # the revocation happens when the certificate is made
        ctx.load_verify_locations(cafile=str(pki.crl_file()))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


# --- what the client saw -----------------------------------------------------------------------

_HANDSHAKE, _ALERT, _CERTIFICATE = 22, 21, 11


def parse_certificate_message(message: bytes, tls13: bool = True) -> list[x509.Certificate]:
    """The certificates in a TLS Certificate handshake message (with its 4-byte header), leaf first.

    TLS 1.3 (RFC 8446 §4.4.2): a request context, then entries of certificate + extensions;
    TLS 1.2 (RFC 5246 §7.4.2): certificates only.
    """
    if len(message) < 4 or message[0] != _CERTIFICATE:
        raise ValueError("not a Certificate handshake message")
    body = message[4 : 4 + int.from_bytes(message[1:4], "big")]
    pos = 1 + body[0] if tls13 else 0
    end = pos + 3 + int.from_bytes(body[pos : pos + 3], "big")
    pos += 3
    certificates = []
    while pos < end:
        size = int.from_bytes(body[pos : pos + 3], "big")
        certificates.append(x509.load_der_x509_certificate(body[pos + 3 : pos + 3 + size]))
        pos += 3 + size
        if tls13:
            pos += 2 + int.from_bytes(body[pos : pos + 2], "big")
    return certificates


class _Recorder:
    """Sees the client's handshake messages (OpenSSL's message callback): keeps the certificates
    the server sent and the alert the client sent."""

    def __init__(self) -> None:
        self.sent: list[x509.Certificate] | None = None
        self.alert: str | None = None

    def __call__(self, conn: object, direction: str, version: object, content_type: object, msg_type: object, data: bytes) -> None:
        try:
            if direction == "read" and int(content_type) == _HANDSHAKE and int(msg_type) == _CERTIFICATE:  # type: ignore[call-overload]
                self.sent = parse_certificate_message(data, tls13=int(version) == 0x0304)  # type: ignore[call-overload]
            # close_notify (0) is the polite goodbye of a successful connection, not a refusal.
            elif direction == "write" and int(content_type) == _ALERT and self.alert is None and int(msg_type) != 0:  # type: ignore[call-overload]
                self.alert = f"{getattr(msg_type, 'name', str(msg_type)).lower()} ({int(msg_type)})"  # type: ignore[call-overload]
        except Exception:  # never break a handshake over a bookkeeping error
            pass


# --- the exact diagnosis -----------------------------------------------------------------------

_SECURITY_BITS = {512: 56, 768: 64, 1024: 80, 1536: 96, 2048: 112, 3072: 128}


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def refine_diagnosis(diagnosis: Diagnosis, sent: list[x509.Certificate]) -> Diagnosis:
    """Make ``diagnosis`` exact with the certificates the server really sent (leaf first).

    * *unable to get local issuer certificate* (20): if the server sent its leaf alone, the walk
      stopped at depth 0 (the leaf's issuer is missing): a **missing intermediate** (public CAs
      never sign server certificates straight from a root). If it sent intermediates, the walk
      stopped at the top of a complete chain: an **unknown root**.
    * a key too small: says which key, and how many bits of security it gives.

    Any other diagnosis comes back unchanged.
    """
    if not sent or diagnosis.who != "client":
        return diagnosis
    if diagnosis.key == "unknown_issuer":
        depth = len(sent) - 1
        top = sent[-1]
        issuer = _cn(top.issuer)
        code = f"verify error 20 at depth {depth}: unable to get local issuer certificate"
        if depth == 0:
            return replace(
                diagnosis,
                key="missing_intermediate",
                what="the server did not send the intermediate certificate that signed its own",
                why=(
                    f"The server sent its certificate alone. Its issuer, '{issuer}', is not in the client's trust store, "
                    "so the client cannot link the certificate to a root it trusts. The walk up the chain stopped at "
                    "depth 0, the leaf: public CAs sign server certificates from an intermediate, never straight "
                    "from the root, so a lone leaf with an unknown issuer means a missing intermediate."
                ),
                fix="configure the server with its full chain: its certificate followed by the intermediate(s) "
                "(fullchain.pem, not cert.pem).",
                code=code,
            )
        names = ", then ".join(f"'{_cn(c.subject)}'" for c in sent)
        return replace(
            diagnosis,
            key="unknown_root",
            what="the server's chain leads to a root the client does not trust",
            why=(
                f"The server sent a complete chain ({names}), but the root that signed '{_cn(top.subject)}', "
                f"'{issuer}', is not in the client's trust store. The walk up the chain stopped at depth {depth}: "
                "everything below it was in order."
            ),
            fix=f"use a certificate from a CA the client trusts; add '{issuer}' to the client's trust store only "
            "if you have a real reason to trust it.",
            code=code,
        )
    if diagnosis.key == "key_too_small":
        key = sent[0].public_key()
        bits = _SECURITY_BITS.get(key.key_size) if isinstance(key, rsa.RSAPublicKey) else None
        strength = f" (about {bits} bits of security)" if bits else ""
        return replace(
            diagnosis,
            why=(
                f"The server's certificate holds an {describe_key(key)} key{strength}. The client runs at OpenSSL "
                "security level 2 (Python's default), which demands at least 112 bits: RSA 2048 or more, or ECDSA P-256."
            ),
        )
    return diagnosis


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenLink:
    """Where the chain broke: ``index`` into the chain (0 is the leaf), a short ``label``, and
    whether that certificate was ``missing`` (not sent by the server)."""

    index: int
    label: str
    missing: bool = False


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def _broken_link(key: str | None, chain: list[x509.Certificate], sent: list[x509.Certificate]) -> BrokenLink | None:
    if key is None:
        return None
    leaf = chain[0]
    if key == "missing_intermediate":
        return BrokenLink(min(len(sent), len(chain) - 1), "not sent by the server", missing=True)
    if key == "unknown_root":
        return BrokenLink(len(chain) - 1, "unknown root: not in the trust store")
    labels = {
        "expired": f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}",
        "not_yet_valid": f"not valid before {leaf.not_valid_before_utc:%Y-%m-%d}",
        "hostname_mismatch": f"for {', '.join(_san_names(leaf)) or '(no SAN)'}, not {HOST}",
        "self_signed": "self-signed: nobody vouches for it",
        "wrong_usage": "a client-only certificate (clientAuth)",
        "revoked": "revoked: on its CA's revocation list",
        "key_too_small": f"key too small: {describe_key(leaf.public_key())}",
    }
    return BrokenLink(0, labels.get(key, key.replace("_", " ")))


@dataclass
class GalleryResult:
    """One gallery experiment: the case, the handshake report and what it means.

    ``chain`` is the server's chain of trust, leaf first and root last (including any
    intermediate the server failed to send); ``sent`` is what the client really received.
    ``diagnosis`` is exact (see :func:`refine_diagnosis`); ``broken`` is the link that broke.
    """

    case: GalleryCase
    report: HandshakeReport = field(repr=False)
    diagnosis: Diagnosis | None
    chain: list[x509.Certificate] = field(repr=False)
    sent: list[x509.Certificate] = field(repr=False)
    broken: BrokenLink | None
    alert: str | None = None  # the alert the client sent, e.g. "certificate_expired (45)"
    trusted_root: x509.Certificate | None = field(default=None, repr=False)
    crl_pem: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.case.name

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def refused_by(self) -> str | None:
        return self.diagnosis.who if self.diagnosis else None

    @property
    def key(self) -> str | None:
        return self.diagnosis.key if self.diagnosis else None

    @property
    def as_expected(self) -> bool:
        """The diagnosis and the refusing side are the ones the case must produce."""
        return self.key == self.case.expected and self.refused_by == self.case.refused_by

    @property
    def not_sent(self) -> list[int]:
        """Indices in ``chain`` of intermediates the server did not send."""
        return [i for i in range(1, len(self.chain) - 1) if i >= len(self.sent)]

    def by_hand(self, at: dt.datetime | None = None) -> ChainVerdict:
        """The same certificates, verified step by step with :func:`tlslab.verify.verify_chain`."""
        crls = [x509.load_pem_x509_crl(self.crl_pem)] if self.crl_pem else []
        roots = [self.trusted_root] if self.trusted_root is not None else []
        return verify_chain(self.sent[0], self.sent[1:], roots, host=HOST, at=at, crls=crls)

    def plot(self, title: str | None = None) -> Figure:
        """The chain of trust, with the broken link in red (:func:`tlslab.plots.chain`)."""
        from .plots import chain as draw_chain  # here, not above: plots sit above experiments

        if title is None:
            title = f"{self.name}: " + (f"the {self.refused_by} refused" if self.refused_by else "the chain holds")
        return draw_chain(self.chain, broken=self.broken, not_sent=self.not_sent, title=title)

    def rows(self) -> list[tuple[str, str]]:
        rows = [("the server", self.case.description)]
        if self.ok:
            rows.append(("result", f"handshake completed: {self.report.version}, {self.report.cipher}"))
        elif self.diagnosis is not None:
            d = self.diagnosis
            rows += [("who refused", f"the {d.who}"), ("what", d.what), ("why", d.why), ("how to fix", d.fix), ("OpenSSL says", d.code)]
            if self.alert:
                rows.append(("alert sent", f"the client sent the alert {self.alert}"))
            seen = self.report.server_view.failure if self.report.server_view else None
            if seen is not None:
                rows.append(("the server's log", f"{seen.what} [{seen.code}]"))
        if self.sent:
            names = " → ".join(_cn(c.subject) for c in self.sent)
            rows.append(("the server sent", f"{len(self.sent)} certificate{'s' if len(self.sent) > 1 else ''}: {names}"))
        if self.broken is not None:
            which = _cn(self.chain[self.broken.index].subject)
            rows.append(("broken link", f"{which}: {self.broken.label}"))
        expected = "succeed" if self.case.expected is None else f"{self.case.expected}, refused by the {self.case.refused_by}"
        rows.append(("expected", f"{expected}: {'✓ as expected' if self.as_expected else '✗ NOT as expected'}"))
        return rows

    def __str__(self) -> str:
        width = max(len(label) for label, _ in self.rows())
        head = f"{self.name}: " + ("handshake completed" if self.ok else f"refused by the {self.refused_by}: {self.key}")
        return "\n".join([head] + [f"{label:<{width}}  {value}" for label, value in self.rows()])

    def __repr__(self) -> str:
        if self.ok:
            return f"<GalleryResult {self.name}: handshake completed ({self.report.version})>"
        d = self.diagnosis
        assert d is not None
        return f"<GalleryResult {self.name}: the {d.who} refused: {d.key} [{d.code}]>"

    def _repr_html_(self) -> str:
        good = self.as_expected
        colour = "#27ae60" if self.ok else "#c0392b"
        if self.ok:
            title = f"✓ {self.name}: handshake completed"
        else:
            title = f"✗ {self.name}: the {self.refused_by} refused — {self.diagnosis.what if self.diagnosis else ''}"
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
            f"<td style='text-align:left{';color:#c0392b' if k == 'expected' and not good else ''}'>{html.escape(v)}</td></tr>"
            for k, v in self.rows()
        )
        return (
            f"<div class='tlslab-gallery' style='border-left:4px solid {colour};padding-left:.6em'>"
            f"<b>{html.escape(title)}</b><table>{body}</table></div>"
        )


def _full_chain(pki: GalleryPKI, credential: Credential) -> list[x509.Certificate]:
    chain = list(credential.chain)
    top = chain[-1]
    if top.issuer != top.subject:
        root = pki.root_of(top)
        if root is not None:
            chain.append(root)
    return chain


def run_case(name: str, *, ca: CertificateAuthority | None = None) -> GalleryResult:
    """One gallery experiment: a fresh server for case ``name``, one handshake, the diagnosis.

    ``ca``: build the gallery on your own CA (a root, or an intermediate) instead of the gallery's.
    The server is stopped before this returns.
    """
    case = _case(name)
    pki = gallery_pki(ca)
    credential = pki.credential(case.name)
    context = client_context_for(case.name, ca=ca)
    recorder = _Recorder()
    # CPython's (undocumented) hook onto OpenSSL's message callback; without it, the chain the
    # server was configured to send stands in for the one received.
    watching = hasattr(context, "_msg_callback")
    if watching:
        context._msg_callback = recorder  # type: ignore[attr-defined]
    with _server(case, pki) as server:
        report = connect(server, context=context, server_hostname=HOST)
    if watching:
        context._msg_callback = None  # type: ignore[attr-defined]
    sent = recorder.sent if recorder.sent else (credential.chain if case.send_intermediates else [credential.certificate])
    diagnosis = refine_diagnosis(report.diagnosis, sent) if report.diagnosis else None
    chain = _full_chain(pki, credential)
    return GalleryResult(
        case=case,
        report=report,
        diagnosis=diagnosis,
        chain=chain,
        sent=sent,
        broken=_broken_link(diagnosis.key if diagnosis else None, chain, sent),
        alert=recorder.alert,
        trusted_root=pki.root.certificate,
        crl_pem=pki.crl_pem() if case.check_crl else None,
    )


@dataclass
class GalleryTable:
    """Every gallery case's result, with a summary table."""

    results: list[GalleryResult]

    def __iter__(self) -> Iterator[GalleryResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: str | int) -> GalleryResult:
        if isinstance(key, int):
            return self.results[key]
        for result in self.results:
            if result.name == key:
                return result
        raise KeyError(key)

    @property
    def all_as_expected(self) -> bool:
        return all(result.as_expected for result in self.results)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(case, refused by, diagnosis, OpenSSL says, as expected) for each case."""
        out = []
        for r in self.results:
            if r.ok:
                out.append((r.name, "nobody", "(handshake completed)", str(r.report.version), "✓" if r.as_expected else "✗"))
            else:
                d = r.diagnosis
                assert d is not None
                out.append((r.name, d.who, d.key, d.code, "✓" if r.as_expected else "✗"))
        return out

    def __repr__(self) -> str:
        header = ("case", "refused by", "diagnosis", "OpenSSL says", "as expected")
        rows = [header, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th style='text-align:left'>{h}</th>"
            for h in ("case", "what is wrong", "refused by", "diagnosis", "OpenSSL says", "as expected")
        )
        body = ""
        for r, (name, who, key, code, mark) in zip(self.results, self.rows()):
            colour = "#27ae60" if mark == "✓" else "#c0392b"
            cells = [name, r.case.description, who, key, code]
            body += (
                "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in cells)
                + f"<td style='color:{colour};font-weight:bold'>{mark}</td></tr>"
            )
        return f"<table class='tlslab-gallery-table'><tr>{head}</tr>{body}</table>"


def run_all(*, ca: CertificateAuthority | None = None) -> GalleryTable:
    """Every case of the gallery, one after the other (the control first)."""
    return GalleryTable([run_case(name, ca=ca) for name in CASES])
