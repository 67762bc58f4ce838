"""Unit tests of tlslab.client: real servers, real handshakes, real failures (no mocks)."""

from __future__ import annotations

import collections
import socket
import ssl
from pathlib import Path

import pytest

from tlslab.client import HandshakeReport, PeerCertificate, client_context, connect
from tlslab.explain import Diagnosis
from tlslab.pki import CertificateAuthority, Credential, self_signed_cert
from tlslab.servers import ConnectionRecord, TLSServer


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Client Test Root")


@pytest.fixture(scope="module")
def inter(ca: CertificateAuthority) -> CertificateAuthority:
    return ca.intermediate("Client Test Issuing CA")


@pytest.fixture(scope="module")
def cred(inter: CertificateAuthority) -> Credential:
    return inter.issue_server_cert("localhost", "127.0.0.1")


@pytest.fixture
def server(cred):
    with TLSServer(cred) as s:
        yield s


@pytest.fixture(scope="module")
def mtls_server(ca, cred):
    with TLSServer(cred, client_cert="required", client_ca=ca, name="client-tests-mtls") as s:
        yield s


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a good handshake ------------------------------------------------------------------------


def test_ok_report_fields(ca, inter, server):
    report = connect(server, trust=ca, send=b"hello")
    assert report.ok and bool(report) is True
    assert report.version == "TLSv1.3"
    assert report.cipher in {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
    assert report.reply == b"hello"
    assert report.address == server.address
    assert report.server_hostname == "localhost"
    assert report.diagnosis is None
    assert report.session_reused is False
    assert 0 < report.handshake_seconds < 2
    assert report.alpn is None
    peer = report.peer
    assert isinstance(peer, PeerCertificate)
    assert peer.subject == "CN=localhost,O=TLS Lab"
    assert peer.issuer == "CN=Client Test Issuing CA,O=TLS Lab"
    assert peer.names == ("localhost", "127.0.0.1")
    assert peer.not_after == "2045-01-01"
    assert peer.key == "ECDSA P-256"
    assert isinstance(report.session, ssl.SSLSession)


def test_without_send_there_is_no_reply(ca, server):
    report = connect(server, trust=ca)
    assert report.ok and report.reply is None


def test_str_send_is_encoded(ca, server):
    assert connect(server, trust=ca, send="héllo").reply == "héllo".encode()


def test_max_version_1_2(ca, server):
    report = connect(server, trust=ca, max_version="1.2", send=b"old")
    assert report.ok and report.version == "TLSv1.2"
    assert report.cipher.startswith("ECDHE-ECDSA-")
    assert report.reply == b"old"
    assert report.server_view.version == "TLSv1.2"


def test_min_version_above_server_max_fails(ca, cred):
    with TLSServer(cred, max_version="1.2") as s:
        report = connect(s, trust=ca, min_version="1.3")
    assert not report.ok and report.diagnosis.key == "protocol_version"


def test_tuple_target_has_no_server_view(ca, server):
    report = connect(("127.0.0.1", server.port), trust=ca, send=b"t")
    assert report.ok and report.reply == b"t"
    assert report.server_view is None


def test_server_view_present_for_our_servers(ca, server):
    report = connect(server, trust=ca, send=b"v")
    view = report.server_view
    assert isinstance(view, ConnectionRecord)
    assert view.ok and view.version == report.version and view.cipher == report.cipher
    failed = connect(server, trust=ca, server_hostname="wrong.test")
    assert isinstance(failed.server_view, ConnectionRecord)
    assert not failed.server_view.ok and failed.server_view.failure.key == "bad_certificate"


# --- resumption ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption(ca, cred, version):
    with TLSServer(cred, max_version=version) as s:
        first = connect(s, trust=ca, send=b"one")
        assert first.ok and first.version == f"TLSv{version}" and not first.session_reused
        second = connect(s, session=first, send=b"two")
        assert second.ok and second.session_reused and second.reply == b"two"
        assert "resumed" in repr(second)
        # without the session: a full handshake
        assert not connect(s, trust=ca).session_reused
        # a session taken without sending anything resumes too
        quiet = connect(s, trust=ca)
        assert connect(s, session=quiet).session_reused


def test_resuming_a_failed_report_is_a_programming_error(ca, server):
    failed = connect(server, trust=None)
    assert not failed.ok
    with pytest.raises(ValueError, match="no session"):
        connect(server, session=failed)


# --- trust -----------------------------------------------------------------------------------


def test_trust_forms(ca, inter, cred, server):
    path = ca.cert_file()
    for trust in (ca, inter, ca.cert_pem, str(path), Path(path)):
        report = connect(server, trust=trust)
        assert report.ok, (trust, report)


def test_trust_a_self_signed_credential_pin():
    pinned = self_signed_cert("localhost")
    with TLSServer(pinned) as s:
        assert connect(s, trust=pinned).ok
        stranger = self_signed_cert("localhost")
        report = connect(s, trust=stranger)
        assert not report.ok and report.diagnosis.key == "self_signed"


def test_trust_a_ca_issued_credential_pin(cred, server):
    report = connect(server, trust=cred)
    assert report.ok, report


def test_trust_none_uses_the_system_store(server):
    report = connect(server, trust=None)
    assert not report.ok
    assert report.diagnosis.key == "unknown_issuer" and report.diagnosis.who == "client"


def test_trust_the_wrong_ca(server):
    report = connect(server, trust=CertificateAuthority("Stranger"))
    assert not report.ok and report.diagnosis.key == "unknown_issuer"


@pytest.mark.parametrize("bad", [42, ["ca.pem"], {"ca": 1}, 3.5])
def test_wrong_trust_type_is_a_type_error(server, bad):
    with pytest.raises(TypeError, match="trust must be"):
        connect(server, trust=bad)
    with pytest.raises(TypeError):
        client_context(bad)


def test_client_context_settings(ca, cred):
    ctx = client_context(ca, min_version="1.2", max_version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", alpn=["h2"])
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    with TLSServer(cred, alpn=["h2"]) as s:
        report = connect(s, context=ctx)
        assert report.version == "TLSv1.2" and report.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert report.alpn == "h2"


# --- failures never raise --------------------------------------------------------------------


def test_connection_refused_is_a_report(ca):
    report = connect(("127.0.0.1", closed_port()), trust=ca)
    assert not report.ok and bool(report) is False
    assert report.diagnosis.key == "connection_refused"
    assert report.server_view is None and report.peer is None
    assert "connection_refused" in repr(report)


def test_hostname_mismatch_is_a_report(ca, server):
    report = connect(server, trust=ca, server_hostname="wrong.test")
    assert not report.ok and report.diagnosis.key == "hostname_mismatch"


def test_certificate_required_is_the_same_every_time(ca, mtls_server):
    seen = collections.Counter()
    views = collections.Counter()
    for _ in range(50):
        report = connect(mtls_server, trust=ca)
        assert not report.ok
        seen[(report.diagnosis.key, report.diagnosis.who)] += 1
        views[report.server_view.failure.key if report.server_view else None] += 1
    assert seen == {("certificate_required", "server"): 50}
    assert views == {"certificate_required": 50}


def test_certificate_required_even_when_sending(ca, mtls_server):
    seen = collections.Counter()
    for _ in range(20):
        report = connect(mtls_server, trust=ca, send=b"let me in")
        seen[(report.ok, report.diagnosis.key if report.diagnosis else None)] += 1
    assert seen == {(False, "certificate_required"): 20}


def test_wrong_ca_client_cert_is_unknown_ca_every_time(ca, mtls_server):
    stranger = CertificateAuthority("Stranger CA").issue_client_cert("spiffe://course.test/intruder")
    seen = collections.Counter()
    for _ in range(50):
        report = connect(mtls_server, trust=ca, cert=stranger)
        seen[(report.ok, report.diagnosis.key if report.diagnosis else None, report.diagnosis and report.diagnosis.who)] += 1
    assert seen == {(False, "unknown_ca", "server"): 50}


def test_valid_client_cert_is_accepted(ca, inter, mtls_server):
    for issuer in (ca, inter):  # a client cert from the intermediate sends its chain too
        client = issuer.issue_client_cert("spiffe://course.test/orders")
        report = connect(mtls_server, trust=ca, cert=client, send=b"order #1")
        assert report.ok and report.reply == b"order #1"
        assert report.server_view.client_identity == "spiffe://course.test/orders"


def test_tls12_missing_client_cert_is_handshake_failure(ca, mtls_server):
    report = connect(mtls_server, trust=ca, max_version="1.2")
    assert not report.ok
    assert (report.diagnosis.key, report.diagnosis.who) == ("handshake_failure", "server")
    assert report.server_view.failure.key == "certificate_required"


# --- presentation ----------------------------------------------------------------------------


def test_str_and_html_of_an_ok_report(ca, server):
    report = connect(server, trust=ca, send=b"<b>hi</b>")
    text = str(report)
    for needle in ("handshake completed", "TLSv1.3", "CN=localhost,O=TLS Lab", "ECDSA P-256",
                   "2045-01-01", "session resumed", "<b>hi</b>", "asked for (SNI)"):
        assert needle in text, needle
    page = report._repr_html_()
    assert "✓ Handshake completed" in page and "#27ae60" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    assert repr(report).startswith("<HandshakeReport ok: TLSv1.3 ")


def test_str_and_html_of_a_failed_report(ca, server):
    report = connect(server, trust=ca, server_hostname="wrong.test")
    text = str(report)
    d = report.diagnosis
    assert isinstance(d, Diagnosis)
    for needle in ("handshake failed", "who refused", "the client", d.what, d.why, d.fix, "verify error 62",
                   "the server's log", "bad_certificate"):
        assert needle in text, needle
    page = report._repr_html_()
    assert "✗ Handshake failed" in page and "#c0392b" in page
    assert "wrong.test" in page
    assert repr(report) == f"<HandshakeReport failed: hostname_mismatch: the client refused: {d.what}>"


def test_long_reply_preview_is_cut(ca, cred):
    with TLSServer(cred) as s:
        report = connect(s, trust=ca, send=b"x" * 500)
    assert report.reply == b"x" * 500
    row = dict(report.rows())["reply"]
    assert row.endswith("… (500 bytes)") and len(row) < 200


def test_report_is_a_handshake_report(ca, server):
    assert isinstance(connect(server, trust=ca), HandshakeReport)
