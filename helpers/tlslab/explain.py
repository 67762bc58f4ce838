"""Turn a TLS failure into a diagnosis a person can act on.

OpenSSL reports failures in three dialects: certificate *verify codes* (``10: certificate has
expired``), *alerts* the peer sent (``TLSV1_ALERT_UNKNOWN_CA``), and local *reasons*
(``UNSUPPORTED_PROTOCOL``). Each has a row in a table below; :func:`diagnose` finds the row and
says who refused, what, why and how to fix it::

    >>> d = diagnose(ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"), side="client")
    >>> d.who, d.key
    ('server', 'certificate_required')

``side`` is where the error was observed. A verify failure means the observer refused its peer's
certificate; a received alert means the peer refused.
"""

from __future__ import annotations

import html
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Literal

__all__ = ["ALERTS", "Diagnosis", "Side", "diagnose", "diagnose_text"]

Side = Literal["client", "server"]


@dataclass(frozen=True)
class Diagnosis:
    """Why a TLS connection failed, in plain words.

    ``key`` is a stable identifier (``expired``, ``unknown_ca``, …) that tests and lab checks use;
    ``code`` is the OpenSSL verify code, alert or reason, for searching the web.
    """

    key: str
    who: str  # "client" or "server": who refused
    what: str
    why: str
    fix: str
    code: str
    raw: str = ""

    def __str__(self) -> str:
        return f"The {self.who} refused: {self.what}. {self.why} Fix: {self.fix} [{self.code}]"

    def __repr__(self) -> str:
        return f"<Diagnosis {self.key}: the {self.who} refused: {self.what} [{self.code}]>"

    def _repr_html_(self) -> str:
        rows = [
            ("who refused", f"the {self.who}"),
            ("what", self.what),
            ("why", self.why),
            ("how to fix", self.fix),
            ("OpenSSL says", self.code),
        ]
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (
            "<div class='tlslab-diagnosis' style='border-left:4px solid #c0392b;padding-left:.6em'>"
            f"<b>✗ {html.escape(self.what[0].upper() + self.what[1:])}</b><table>{body}</table></div>"
        )


@dataclass(frozen=True)
class _Row:
    key: str
    what: str
    why: str
    fix: str


# --- certificate verification: OpenSSL's X509_V_ERR_* codes -------------------------------
# The observer (client or server) checked its peer's certificate and said no. Texts use "peer"
# words that are filled in with "server" or "client".

VERIFY_CODES: dict[int, _Row] = {
    10: _Row("expired", "the {peer}'s certificate has expired",
             "Its 'valid until' date is in the past, so the {me} no longer accepts it.",
             "issue a fresh certificate (and automate renewal so it never lapses)."),
    9: _Row("not_yet_valid", "the {peer}'s certificate is not valid yet",
            "Its 'valid from' date is in the future (or this machine's clock is behind).",
            "issue the certificate with a start date in the past, or fix the clock."),
    18: _Row("self_signed", "the {peer}'s certificate is self-signed",
             "It vouches for itself; no CA the {me} trusts signed it.",
             "use a certificate issued by a CA the {me} trusts, or add this exact certificate to the {me}'s trust store."),
    19: _Row("self_signed_in_chain", "the {peer}'s chain ends in a root the {me} does not trust",
             "The chain was complete, but its root is not in the {me}'s trust store.",
             "add that root CA to the {me}'s trust store (if you really trust it)."),
    20: _Row("unknown_issuer", "the {peer}'s certificate was signed by a CA the {me} does not know",
             "The {me} could not find the issuer's certificate: either it is an unknown root, or the {peer} did not send its intermediate.",
             "trust the right root CA, and make the {peer} send its full chain (leaf + intermediates)."),
    2: _Row("unknown_issuer", "the {peer}'s certificate was signed by a CA the {me} does not know",
            "The issuer's certificate could not be found.",
            "trust the right root CA, and make the {peer} send its full chain (leaf + intermediates)."),
    21: _Row("missing_intermediate", "the {peer}'s chain is incomplete",
             "The {me} could not verify the leaf's signature: the intermediate that signed it is missing.",
             "configure the {peer} with its full chain: the leaf followed by the intermediate(s)."),
    7: _Row("bad_signature", "a signature in the {peer}'s chain does not verify",
            "A certificate was altered, or was not signed by the key its issuer field names.",
            "re-issue the certificate from the real CA."),
    23: _Row("revoked", "the {peer}'s certificate has been revoked",
             "The CA's revocation list (CRL) lists its serial number.",
             "get a new certificate; find out why the old one was revoked (a leaked key?)."),
    3: _Row("crl_missing", "the {me} could not find a CRL for the {peer}'s certificate",
            "Revocation checking is on, but no revocation list from that CA is loaded.",
            "load the CA's current CRL into the {me}, or turn off CRL checking for that CA."),
    12: _Row("crl_expired", "the revocation list has expired",
             "The CRL's next-update date is in the past.", "fetch a fresh CRL from the CA."),
    25: _Row("path_length", "the {peer}'s chain is longer than a CA allows",
             "A CA's basicConstraints path length limits how many CAs may sit below it; this chain has more.",
             "issue the leaf from a CA closer to the root, or re-issue the intermediates with a larger path length."),
    24: _Row("invalid_ca", "a certificate in the {peer}'s chain is used as a CA but is not one",
             "Only certificates with basicConstraints CA:TRUE may sign other certificates.",
             "issue the chain from a real CA certificate."),
    26: _Row("wrong_usage", "the {peer}'s certificate is not meant for this use",
             "Its extended key usage does not allow it (e.g. a client-only certificate used by a server).",
             "issue a certificate with the right extended key usage (serverAuth for servers, clientAuth for clients)."),
    62: _Row("hostname_mismatch", "the {peer}'s certificate is for another name",
             "None of the names in its subjectAltName matches the host name the {me} asked for (the CN is not checked).",
             "connect with a name the certificate lists, or issue a certificate whose SAN includes this host name."),
    64: _Row("hostname_mismatch", "the {peer}'s certificate is for another address",
             "None of the IP addresses in its subjectAltName matches the address the {me} connected to.",
             "issue a certificate whose SAN lists this IP address."),
    66: _Row("key_too_small", "the {peer}'s key is too small",
             "OpenSSL's security level refuses keys this short (e.g. RSA 1024 needs < 80 bits of security).",
             "use an ECDSA P-256 or RSA ≥ 2048 key."),
    67: _Row("key_too_small", "a CA key in the {peer}'s chain is too small",
             "OpenSSL's security level refuses CA keys this short.", "re-issue the chain with stronger keys."),
    68: _Row("weak_signature", "the {peer}'s certificate uses a weak signature hash",
             "OpenSSL's security level refuses MD5 and SHA-1 signatures.", "re-issue the certificate signed with SHA-256."),
}

# --- alerts: what the peer told us before hanging up --------------------------------------
# name -> (number, row). The alert's sender is the one who refused.

ALERTS: dict[str, tuple[int, _Row]] = {
    "close_notify": (0, _Row("close_notify", "the {peer} closed the connection", "It sent close_notify.", "nothing: that is a clean end.")),
    "unexpected_message": (10, _Row("unexpected_message", "the {peer} received a message it did not expect",
                                    "The handshake messages came in the wrong order.", "check both sides speak TLS correctly.")),
    "bad_record_mac": (20, _Row("bad_record_mac", "a record failed its integrity check",
                                "A record's authentication tag did not verify: it was altered in flight (or the keys differ).",
                                "nothing to configure: TLS did its job and detected tampering; find who alters the traffic.")),
    "handshake_failure": (40, _Row("handshake_failure", "the {peer} could not agree on the handshake",
                                   "Either no cipher suite, group or signature algorithm is acceptable to both sides, "
                                   "or (in TLS 1.2) the {peer} required a client certificate and got none.",
                                   "allow at least one modern cipher suite (ECDHE with AES-GCM) on both sides; "
                                   "if the {peer} uses mutual TLS, present a client certificate.")),
    "bad_certificate": (42, _Row("bad_certificate", "the {peer} rejected the {me}'s certificate",
                                 "The {me}'s certificate was malformed or failed a check (signature, usage).",
                                 "present a certificate issued for this purpose by a CA the {peer} trusts.")),
    "unsupported_certificate": (43, _Row("unsupported_certificate", "the {peer} rejected the {me}'s certificate's type or usage",
                                         "The certificate's key usage or extended key usage does not allow this use.",
                                         "issue a certificate with the right extended key usage (clientAuth for a client).")),
    "certificate_revoked": (44, _Row("revoked", "the {peer} rejected the {me}'s certificate: it has been revoked",
                                     "The {me}'s certificate's serial number is on the CA's revocation list.",
                                     "get a new certificate; find out why the old one was revoked.")),
    "certificate_expired": (45, _Row("expired", "the {peer} rejected the {me}'s certificate: it has expired",
                                     "The {me}'s certificate's 'valid until' date is in the past.",
                                     "renew the {me}'s certificate (and automate renewal).")),
    "certificate_unknown": (46, _Row("certificate_unknown", "the {peer} rejected the {me}'s certificate",
                                     "Something about the {me}'s certificate was unacceptable (not further specified).",
                                     "check its validity, usage and issuer.")),
    "illegal_parameter": (47, _Row("illegal_parameter", "the {peer} received an invalid field",
                                   "A handshake field was out of range or inconsistent.", "check both TLS implementations.")),
    "unknown_ca": (48, _Row("unknown_ca", "the {peer} does not trust the CA that issued the {me}'s certificate",
                            "It could not build a chain from the {me}'s certificate to a root it trusts.",
                            "use a certificate from the CA the {peer} trusts (or have the {me} send its intermediates too).")),
    "access_denied": (49, _Row("access_denied", "the {peer} denied access",
                               "The {me}'s certificate is valid, but the {peer}'s policy does not allow it.",
                               "grant that identity access in the {peer}'s policy, or use an identity that has it.")),
    "decode_error": (50, _Row("decode_error", "the {peer} could not parse a message",
                              "A message was malformed.", "check what is sending bytes on this connection.")),
    "decrypt_error": (51, _Row("decrypt_error", "a handshake signature or Finished check failed",
                               "A signature (CertificateVerify) or the Finished message did not verify.",
                               "make sure the certificate and private key belong together.")),
    "protocol_version": (70, _Row("protocol_version", "the {peer} does not speak a TLS version the {me} offered",
                                  "The versions the two sides allow do not overlap: typically one side still speaks only TLS 1.0 or 1.1.",
                                  "upgrade the old side to TLS 1.2 or 1.3; never lower the modern side's minimum.")),
    "insufficient_security": (71, _Row("insufficient_security", "the {peer} wants stronger parameters",
                                       "Every cipher the {me} offered is weaker than the {peer} accepts.",
                                       "offer modern cipher suites.")),
    "internal_error": (80, _Row("internal_error", "the {peer} hit an internal error",
                                "Something unrelated to the {me} failed inside the {peer}.", "look at the {peer}'s logs.")),
    "user_canceled": (90, _Row("user_canceled", "the {peer} cancelled the handshake",
                               "The {peer} chose to stop (a person or program aborted it), not a protocol error.",
                               "ask the {peer}'s operator why it aborted.")),
    "missing_extension": (109, _Row("missing_extension", "a required TLS extension was missing",
                                    "The {peer} needed an extension the other side did not send.",
                                    "use an up-to-date TLS library.")),
    "unsupported_extension": (110, _Row("unsupported_extension", "an extension was not expected",
                                        "The {peer} received an extension in a message where it was never offered or allowed.",
                                        "use an up-to-date TLS library on both sides.")),
    "unrecognized_name": (112, _Row("unrecognized_name", "the {peer} does not serve that host name",
                                    "No certificate on the {peer} matches the requested name (SNI).",
                                    "ask for a host name the {peer} serves.")),
    "certificate_required": (116, _Row("certificate_required", "the {peer} requires a client certificate and the {me} sent none",
                                       "This is mutual TLS: the {peer} asked for the {me}'s certificate (CertificateRequest) and got an empty one.",
                                       "present a client certificate issued by a CA the {peer} trusts.")),
    "no_application_protocol": (120, _Row("no_application_protocol", "no common application protocol (ALPN)",
                                          "The {peer} supports none of the protocols the {me} offered via ALPN.",
                                          "offer a protocol the {peer} supports (e.g. http/1.1).")),
}

# OpenSSL's reason names for received alerts: SSLV3_ALERT_BAD_CERTIFICATE, TLSV1_ALERT_UNKNOWN_CA, …
_ALERT_REASON = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_ALERT_(\w+)$|^TLSV1_(UNRECOGNIZED_NAME)$")

# --- local reasons: the observer itself gave up ------------------------------------------

REASONS: dict[str, _Row] = {
    "UNSUPPORTED_PROTOCOL": _Row("protocol_version", "the {peer} only speaks a TLS version the {me} will not use",
                                 "The versions the two sides allow do not overlap (typically an old server: TLS 1.0 or 1.1).",
                                 "upgrade the old side to TLS 1.2 or 1.3; do not lower the {me}'s minimum."),
    "NO_PROTOCOLS_AVAILABLE": _Row("no_protocols", "no TLS version is enabled",
                                   "The minimum version is above the maximum.", "fix the version settings."),
    "NO_SHARED_CIPHER": _Row("no_shared_cipher", "the two sides share no cipher suite",
                             "None of the client's cipher suites is enabled on the server.",
                             "enable at least one modern suite (ECDHE with AES-GCM or ChaCha20-Poly1305) on both sides."),
    "NO_CIPHERS_AVAILABLE": _Row("no_shared_cipher", "no cipher suite is available",
                                 "The cipher settings leave nothing usable.", "enable at least one modern cipher suite."),
    "NO_SUITABLE_SIGNATURE_ALGORITHM": _Row("handshake_failure", "no signature algorithm in common",
                                            "The {peer}'s key cannot sign with any algorithm the {me} accepts.",
                                            "use an ECDSA P-256 or RSA key."),
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": _Row("certificate_required", "the {peer} sent no certificate",
                                              "Mutual TLS is required here, and the {peer} presented no certificate.",
                                              "the {peer} must present a client certificate from a trusted CA."),
    "WRONG_VERSION_NUMBER": _Row("not_tls", "the {peer} did not answer with TLS",
                                 "The bytes that came back are not a TLS record (a plaintext service on a TLS port?).",
                                 "connect to the TLS port, or use a plaintext client."),
    "HTTP_REQUEST": _Row("not_tls", "the {peer} spoke plain HTTP to a TLS port",
                         "The first bytes were an HTTP request, not a TLS ClientHello.", "use https://, not http://."),
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": _Row("bad_record_mac", "a record failed its integrity check",
                                                "A record's authentication tag did not verify: it was altered in flight.",
                                                "nothing to configure: TLS detected tampering; find who alters the traffic."),
    "UNEXPECTED_EOF_WHILE_READING": _Row("unexpected_eof", "the {peer} hung up without a word",
                                         "The connection closed without a TLS alert or close_notify (crash, timeout, a middlebox, or a truncation attack).",
                                         "look at the {peer}'s side: its logs say why it closed."),
    "EE_KEY_TOO_SMALL": _Row("key_too_small", "the certificate's key is too small",
                             "OpenSSL's security level refuses keys this short.", "use an ECDSA P-256 or RSA ≥ 2048 key."),
    "CA_MD_TOO_WEAK": _Row("weak_signature", "the certificate's signature hash is too weak",
                           "OpenSSL's security level refuses MD5 and SHA-1 signatures.", "re-issue with SHA-256."),
    "BAD_RECORD_TYPE": _Row("bad_record", "a record had an impossible type",
                            "The record header's content type is not one TLS defines: the header was altered in flight, or the bytes are not TLS.",
                            "nothing to configure: the stream was corrupted or tampered with; find who alters the traffic."),
    "UNEXPECTED_RECORD": _Row("bad_record", "a record arrived where it is not allowed",
                              "The {peer} sent a record of a type that makes no sense at this point of the protocol.",
                              "check what sits between the two sides; a tampering middlebox or a buggy peer."),
    "UNEXPECTED_MESSAGE": _Row("unexpected_message", "a handshake message came out of order",
                               "The {me} received a message the protocol does not allow at this point.",
                               "check both TLS implementations and anything that alters the traffic."),
    "EXCESSIVE_MESSAGE_SIZE": _Row("bad_record", "a message was larger than allowed",
                                   "A length field announced more than TLS allows (an altered length byte?).",
                                   "nothing to configure: the stream was corrupted or tampered with."),
    "BAD_SIGNATURE": _Row("bad_signature", "a handshake signature did not verify",
                          "The {peer}'s CertificateVerify (or key exchange) signature is wrong: altered in flight, or a key that doesn't match the certificate.",
                          "make sure the certificate and private key belong together; find who alters the traffic."),
    "DIGEST_CHECK_FAILED": _Row("decrypt_error", "the Finished check failed",
                                "The two sides computed different handshake transcripts: a handshake message was altered in flight.",
                                "nothing to configure: TLS detected tampering with the handshake."),
    "BAD_EXTENSION": _Row("bad_extension", "an extension was malformed or not allowed here",
                          "The {peer} sent an extension the {me} cannot accept in this message.",
                          "use up-to-date TLS libraries; check nothing alters the handshake."),
    "SHUTDOWN_WHILE_IN_INIT": _Row("unexpected_eof", "the connection was closed during the handshake",
                                   "The handshake never finished.", "look at the {peer}'s side: its logs say why it closed."),
    "RECORD_LAYER_FAILURE": _Row("record_layer", "the record layer failed", "A TLS record could not be processed.", "see the raw error."),
}

_OTHER = {
    ConnectionRefusedError: _Row("connection_refused", "nothing is listening there",
                                 "The TCP connection was refused: no server on that port.", "start the server, or check the port."),
    ConnectionResetError: _Row("connection_reset", "the {peer} reset the connection",
                               "The TCP connection was torn down (RST) without a TLS alert, so no reason reached the {me}.",
                               "look at the {peer}'s side: its logs say why."),
    BrokenPipeError: _Row("connection_reset", "the {peer} closed the connection",
                          "The {me} wrote to a connection the {peer} had already closed.", "look at the {peer}'s side."),
    TimeoutError: _Row("timeout", "the {peer} did not answer in time",
                       "Nothing came back before the timeout (a stalled handshake, or a service that is not TLS).",
                       "check the {peer} is a TLS service and is not overloaded."),
}


def _other(side: str) -> str:
    return "server" if side == "client" else "client"


def _fill(row: _Row, *, who: str, side: str, code: str, raw: str) -> Diagnosis:
    # Texts are written from where the error was seen: "{me}" is that side, "{peer}" the other.
    words = {"me": side, "peer": _other(side)}
    return Diagnosis(
        key=row.key,
        who=who,
        what=row.what.format(**words),
        why=row.why.format(**words),
        fix=row.fix.format(**words),
        code=code,
        raw=raw,
    )


def _alert_row(alert_name: str) -> tuple[int, _Row] | None:
    return ALERTS.get(alert_name.lower())


def diagnose(error: BaseException, side: Side = "client") -> Diagnosis:
    """Explain ``error``, raised on ``side`` during or right after a handshake."""
    if side not in ("client", "server"):
        raise ValueError("side must be 'client' or 'server'")
    raw = str(error)
    if isinstance(error, ssl.SSLCertVerificationError):
        row = VERIFY_CODES.get(error.verify_code or -1)
        code = f"verify error {error.verify_code}: {error.verify_message}"
        if row is None:
            row = _Row("verify_failed", "the {peer}'s certificate failed verification", f"OpenSSL says: {error.verify_message}.",
                       "look up the verify code; the certificate or the trust store must change.")
        return _fill(row, who=side, side=side, code=code, raw=raw)
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or _reason_from_text(raw)
        if reason:
            found = _ALERT_REASON.match(reason)
            if found:
                name = (found.group(1) or found.group(2)).lower()
                alert = _alert_row(name)
                if alert:
                    number, row = alert
                    # The peer sent the alert: the peer refused, and its words are about *us*.
                    return _fill(row, who=_other(side), side=side, code=f"alert {name} ({number}) received", raw=raw)
                return _generic(side, f"the {_other(side)} sent the alert {name}", raw, code=reason, who=_other(side))
            row = REASONS.get(reason)
            if row is not None:
                return _fill(row, who=side, side=side, code=reason, raw=raw)
        if isinstance(error, ssl.SSLEOFError):
            return _fill(REASONS["UNEXPECTED_EOF_WHILE_READING"], who=_other(side), side=side, code="unexpected EOF", raw=raw)
        return _generic(side, "the TLS connection failed", raw, code=reason or type(error).__name__)
    for exc_type, row in _OTHER.items():
        if isinstance(error, exc_type):
            who = side if exc_type is TimeoutError else _other(side)
            return _fill(row, who=who, side=side, code=type(error).__name__, raw=raw)
    if isinstance(error, socket.timeout):  # pragma: no cover - alias of TimeoutError since 3.10
        return _fill(_OTHER[TimeoutError], who=side, side=side, code="timeout", raw=raw)
    if isinstance(error, OSError):
        return _generic(side, "the connection failed", raw, code=type(error).__name__)
    raise TypeError(f"diagnose() explains connection errors, not {type(error).__name__}: {error}") from error


# OpenSSL's verify messages, as curl and servers' logs print them without the number.
_VERIFY_WORDS = (
    ("self-signed certificate in certificate chain", 19),
    ("self signed certificate in certificate chain", 19),
    ("self-signed certificate", 18),
    ("self signed certificate", 18),
    ("certificate has expired", 10),
    ("certificate is not yet valid", 9),
    ("unable to get local issuer certificate", 20),
    ("unable to verify the first certificate", 21),
    ("hostname mismatch", 62),
    ("unsupported certificate purpose", 26),
    ("unsuitable certificate purpose", 26),
    ("ip address mismatch", 64),
    ("ee certificate key too weak", 66),
    ("ca certificate key too weak", 67),
    ("path length constraint exceeded", 25),
    ("certificate revoked", 23),
    ("ee key too small", 66),
)


def _verify_code_from_words(message: str) -> int | None:
    lowered = message.lower()
    return next((code for words, code in _VERIFY_WORDS if words in lowered), None)


def _reason_from_text(text: str) -> str | None:
    found = re.search(r"\[SSL: (\w+)\]", text)
    return found.group(1) if found else None


def _generic(side: str, what: str, raw: str, *, code: str, who: str | None = None) -> Diagnosis:
    return Diagnosis(
        key="unknown",
        who=who or side,
        what=what,
        why=f"OpenSSL's own words: {raw}",
        fix="search for the OpenSSL reason in brackets; the course's table does not know this one yet.",
        code=code,
        raw=raw,
    )


def diagnose_text(message: str, side: Side = "client") -> Diagnosis:
    """Explain an OpenSSL error as text, e.g. a line from ``openssl s_client`` or a server log."""
    verify = re.search(r"verify error:num=(\d+)|certificate verify failed: .*\((\d+)\)", message)
    code = int(verify.group(1) or verify.group(2)) if verify else _verify_code_from_words(message)
    if code is not None:
        err = ssl.SSLCertVerificationError(1, message)
        err.verify_code, err.verify_message = code, message
        return diagnose(err, side)
    alert = re.search(r"alert (?:number )?([a-z ]+?)(?:\s*$|[:,(])", message.lower())
    if alert:
        name = alert.group(1).strip().replace(" ", "_")
        found = _alert_row(name)
        if found:
            number, row = found
            return _fill(row, who=_other(side), side=side, code=f"alert {name} ({number}) received", raw=message)
    reason = _reason_from_text(message)
    if reason and reason in REASONS:
        return _fill(REASONS[reason], who=side, side=side, code=reason, raw=message)
    return _generic(side, "the TLS connection failed", message, code="unknown")
