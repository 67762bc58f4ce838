"""Unit tests of tlslab.explain: every gallery diagnosis comes from a real failure between real
OpenSSL endpoints (no mocks); a few table checks use error objects built by hand."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tlslab.client import client_context, connect
from tlslab.explain import ALERTS, REASONS, VERIFY_CODES, Diagnosis, diagnose, diagnose_text
from tlslab.pki import CertificateAuthority, Credential, self_signed_cert
from tlslab.servers import TLSServer

UTC = dt.timezone.utc
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def assert_human(d: Diagnosis) -> None:
    """what/why/fix are filled-in sentences a person can read."""
    assert isinstance(d, Diagnosis)
    assert d.who in ("client", "server")
    for name in ("what", "why", "fix"):
        text = getattr(d, name)
        assert isinstance(text, str) and len(text.strip()) >= 10, (name, text)
        assert not PLACEHOLDER.search(text), (name, text)
    assert d.code
    assert f"The {d.who} refused" in str(d)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Gallery Root CA")


@pytest.fixture(scope="module")
def inter(ca) -> CertificateAuthority:
    return ca.intermediate("Gallery Issuing CA")


@pytest.fixture(scope="module")
def good(ca) -> Credential:
    return ca.issue_server_cert("localhost", "127.0.0.1")


def verify_code_of(d: Diagnosis) -> int:
    found = re.match(r"verify error (\d+):", d.code)
    assert found, d.code
    return int(found.group(1))


# --- the gallery of broken servers: real handshakes ----------------------------------------------


def test_expired(ca):
    cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
                                not_after=dt.datetime(2021, 1, 1, tzinfo=UTC))
    with TLSServer(cred) as s:
        report = connect(s, trust=ca)
    d = report.diagnosis
    assert (d.key, d.who) == ("expired", "client")
    assert verify_code_of(d) == 10
    assert "expired" in d.what
    assert_human(d)
    # the server learns it from the client's alert
    assert report.server_view.failure.key == "expired"
    assert report.server_view.failure.who == "client"


def test_not_yet_valid(ca):
    cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2040, 1, 1, tzinfo=UTC))
    with TLSServer(cred) as s:
        d = connect(s, trust=ca).diagnosis
    assert (d.key, d.who) == ("not_yet_valid", "client")
    assert verify_code_of(d) == 9
    assert_human(d)


@pytest.mark.parametrize("asked, code", [("wrong.course.test", 62), ("127.0.0.2", 64)])
def test_hostname_mismatch(ca, good, asked, code):
    with TLSServer(good) as s:
        report = connect(s, trust=ca, server_hostname=asked)
    d = report.diagnosis
    assert (d.key, d.who) == ("hostname_mismatch", "client")
    assert verify_code_of(d) == code
    assert asked in d.raw
    assert_human(d)
    assert report.server_view.failure.key == "bad_certificate"


def test_self_signed(ca):
    with TLSServer(self_signed_cert("localhost")) as s:
        report = connect(s, trust=ca)
    d = report.diagnosis
    assert (d.key, d.who) == ("self_signed", "client")
    assert verify_code_of(d) == 18
    assert "self-signed" in d.what
    assert_human(d)
    assert report.server_view.failure.key == "unknown_ca"


def test_unknown_root(ca):
    stranger = CertificateAuthority("Unknown Root CA")
    with TLSServer(stranger.issue_server_cert("localhost")) as s:
        d = connect(s, trust=ca).diagnosis
    assert (d.key, d.who) == ("unknown_issuer", "client")
    assert verify_code_of(d) == 20
    assert_human(d)


def test_missing_intermediate(ca, inter):
    leaf = inter.issue_server_cert("localhost")
    with TLSServer(leaf, send_intermediates=False) as s:
        report = connect(s, trust=ca)
        # the same server configured properly works: the chain was the only problem
        with TLSServer(leaf) as full:
            assert connect(full, trust=ca).ok
    d = report.diagnosis
    code = verify_code_of(d)
    # Python stops at OpenSSL's first error: 20 (unable to get local issuer certificate) is what
    # OpenSSL 3 reports here; 21 (unable to verify the first certificate) comes only after it.
    assert code in (20, 21)
    assert d.key == VERIFY_CODES[code].key
    assert d.who == "client"
    words = f"{d.what} {d.why} {d.fix}".lower()
    assert "intermediate" in words and ("incomplete" in words or "issuer" in words)
    assert_human(d)


def test_wrong_usage(ca):
    with TLSServer(ca.issue_server_cert("localhost", usage="client")) as s:
        report = connect(s, trust=ca)
    d = report.diagnosis
    assert (d.key, d.who) == ("wrong_usage", "client")
    assert verify_code_of(d) == 26
    assert_human(d)
    assert report.server_view.failure.key == "unsupported_certificate"


def test_revoked(ca, good, tmp_path: Path):
    revoked = ca.issue_server_cert("localhost")
    ca.revoke(revoked)
    cafile = tmp_path / "ca-and-crl.pem"
    cafile.write_bytes(ca.cert_pem + ca.crl_pem())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(cafile))
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    with TLSServer(revoked) as s:
        report = connect(s, context=ctx)
    with TLSServer(good) as s:
        assert connect(s, context=ctx).ok  # the same client accepts a certificate that is not revoked
    d = report.diagnosis
    assert (d.key, d.who) == ("revoked", "client")
    assert verify_code_of(d) == 23
    assert_human(d)
    assert report.server_view.failure.key == "revoked"


def test_revoked_client_certificate(ca, good):
    device = ca.issue_client_cert("spiffe://course.test/stolen-device")
    ca.revoke(device)
    with TLSServer(good, client_cert="required", client_ca=ca, crl=ca.crl_pem()) as s:
        report = connect(s, trust=ca, cert=device)
        assert connect(s, trust=ca, cert=ca.issue_client_cert("spiffe://course.test/ok")).ok
    d = report.diagnosis
    assert (d.key, d.who) == ("revoked", "server")
    assert d.code == "alert certificate_revoked (44) received"
    assert_human(d)
    seen = report.server_view.failure
    assert (seen.key, seen.who) == ("revoked", "server")
    assert verify_code_of(seen) == 23


def test_key_too_small_server_key(ca):
    """At OpenSSL security level 2 (Debian's default) the *server* refuses to load an RSA 1024
    key, so the demo fails before any handshake, in TLSServer(...)."""
    weak = ca.issue_server_cert("localhost", key_type="rsa1024")
    try:
        server = TLSServer(weak)
    except ssl.SSLError as exc:
        assert exc.reason == "EE_KEY_TOO_SMALL"
        d = diagnose(exc, side="server")
        assert (d.key, d.who) == ("key_too_small", "server")
        assert_human(d)
        return
    # a lower security level: then the client must be the one to refuse
    with server:
        d = connect(server, trust=ca).diagnosis
    assert d is not None and d.key == "key_too_small"
    assert_human(d)


def test_key_too_small_ca_key(good):
    """A strong leaf under a weak (RSA 1024) CA: the server loads it, the client refuses (code 67)."""
    weak_ca = CertificateAuthority("Weak Root", key_type="rsa1024")
    with TLSServer(weak_ca.issue_server_cert("localhost")) as s:
        d = connect(s, trust=weak_ca).diagnosis
    assert (d.key, d.who) == ("key_too_small", "client")
    assert verify_code_of(d) == 67
    assert_human(d)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_protocol_version(ca, good):
    with TLSServer(good, min_version="1.0", max_version="1.0", legacy=True) as s:
        report = connect(s, trust=ca)
    d = report.diagnosis
    assert (d.key, d.who) == ("protocol_version", "server")
    assert d.code == "alert protocol_version (70) received"
    assert_human(d)
    seen = report.server_view.failure
    assert (seen.key, seen.who, seen.code) == ("protocol_version", "server", "UNSUPPORTED_PROTOCOL")
    assert_human(seen)


def test_no_shared_cipher(ca, good):
    with TLSServer(good, max_version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256") as s:
        report = connect(s, trust=ca, max_version="1.2", ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
        # each cipher alone works: only the pair is disjoint
        assert connect(s, trust=ca, max_version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256").ok
    d = report.diagnosis
    assert (d.key, d.who) == ("handshake_failure", "server")
    assert d.code == "alert handshake_failure (40) received"
    assert "cipher" in d.why
    assert_human(d)
    seen = report.server_view.failure
    assert (seen.key, seen.who, seen.code) == ("no_shared_cipher", "server", "NO_SHARED_CIPHER")
    assert_human(seen)


def test_certificate_required(ca, good):
    with TLSServer(good, client_cert="required", client_ca=ca) as s:
        report = connect(s, trust=ca)
    d = report.diagnosis
    assert (d.key, d.who) == ("certificate_required", "server")
    assert d.code == "alert certificate_required (116) received"
    assert "client certificate" in d.what
    assert_human(d)
    seen = report.server_view.failure
    assert (seen.key, seen.who) == ("certificate_required", "server")
    assert_human(seen)


def test_unknown_ca(ca, good):
    intruder = CertificateAuthority("Intruder CA").issue_client_cert("spiffe://course.test/intruder")
    with TLSServer(good, client_cert="required", client_ca=ca) as s:
        report = connect(s, trust=ca, cert=intruder)
    d = report.diagnosis
    assert (d.key, d.who) == ("unknown_ca", "server")
    assert d.code == "alert unknown_ca (48) received"
    assert_human(d)
    seen = report.server_view.failure
    assert (seen.key, seen.who) == ("unknown_issuer", "server")
    assert verify_code_of(seen) == 20


def test_connection_refused_and_timeout_texts(ca):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = connect(("127.0.0.1", port), trust=ca).diagnosis
    assert d.key == "connection_refused"
    assert_human(d)
    with socket.socket() as listener:  # listens, never answers: the client times out
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        d = connect(listener.getsockname(), trust=ca, timeout=0.3).diagnosis
    assert (d.key, d.who) == ("timeout", "client")
    assert_human(d)


# --- directions: a diagnosis speaks from where it was observed -----------------------------------


def test_side_swaps_the_words():
    client_view = diagnose_text("tlsv1 alert unknown ca", side="client")
    server_view = diagnose_text("tlsv1 alert unknown ca", side="server")
    assert client_view.who == "server" and server_view.who == "client"
    assert "the server does not trust" in client_view.what
    assert "the client does not trust" in server_view.what


def test_bad_side_is_a_value_error():
    with pytest.raises(ValueError):
        diagnose(ConnectionRefusedError(), side="middle")  # type: ignore[arg-type]


# --- diagnose_text -------------------------------------------------------------------------------


@pytest.mark.parametrize("line, side, key, who", [
    ("verify error:num=10:certificate has expired", "client", "expired", "client"),
    ("verify error:num=9:certificate is not yet valid", "client", "not_yet_valid", "client"),
    ("verify error:num=18:self-signed certificate", "client", "self_signed", "client"),
    ("verify error:num=20:unable to get local issuer certificate", "client", "unknown_issuer", "client"),
    ("verify error:num=21:unable to verify the first certificate", "client", "missing_intermediate", "client"),
    ("verify error:num=26:unsuitable certificate purpose", "client", "wrong_usage", "client"),
    ("verify error:num=23:certificate revoked", "client", "revoked", "client"),
    ("verify error:num=62:hostname mismatch", "client", "hostname_mismatch", "client"),
    ("40F7B1A8C17F0000:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:"
     "../ssl/record/rec_layer_s3.c:1584:SSL alert number 48", "client", "unknown_ca", "server"),
    ("805BCF3E067F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:"
     "../ssl/record/rec_layer_s3.c:1601:SSL alert number 116", "client", "certificate_required", "server"),
    ("error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:"
     "../ssl/record/rec_layer_s3.c:1584:SSL alert number 40", "client", "handshake_failure", "server"),
    ("error:0A00042E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version:"
     "../ssl/record/rec_layer_s3.c:1584:SSL alert number 70", "client", "protocol_version", "server"),
    ("[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol (_ssl.c:1006)", "client", "protocol_version", "client"),
    ("[SSL: NO_SHARED_CIPHER] no shared cipher (_ssl.c:1006)", "server", "no_shared_cipher", "server"),
    ("[SSL: HTTP_REQUEST] http request (_ssl.c:1006)", "server", "not_tls", "server"),
])
def test_diagnose_text_lines(line, side, key, who):
    d = diagnose_text(line, side=side)
    assert (d.key, d.who) == (key, who)
    assert_human(d)
    assert d.raw == line or line in d.code or line in d.raw


def test_diagnose_text_of_unknown_text_keeps_it():
    line = "something nobody has seen before"
    d = diagnose_text(line)
    assert d.key == "unknown" and d.raw == line and line in d.why


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_diagnose_text_on_real_s_client_output(ca, inter):
    """Feed what `openssl s_client` really prints for a server that forgets its intermediate."""
    with TLSServer(inter.issue_server_cert("localhost"), send_intermediates=False) as s:
        run = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}", "-servername", "localhost",
             "-CAfile", str(ca.cert_file())],
            input=b"", capture_output=True, timeout=20,
        )
    output = (run.stdout + run.stderr).decode(errors="replace")
    verify_lines = [line for line in output.splitlines() if line.startswith("verify error:num=")]
    assert [int(line.split("=")[1].split(":")[0]) for line in verify_lines] == [20, 21], output
    first, second = (diagnose_text(line) for line in verify_lines)
    assert first.key == "unknown_issuer" and second.key == "missing_intermediate"
    assert_human(first)
    assert_human(second)
    assert "Verify return code: 21" in output


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_diagnose_text_on_real_s_client_alert(ca, good):
    with TLSServer(good, client_cert="required", client_ca=ca) as s:
        run = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{s.port}", "-servername", "localhost",
             "-CAfile", str(ca.cert_file()), "-ign_eof"],  # wait for the server's verdict (TLS 1.3)
            input=b"", capture_output=True, timeout=20,
        )
    output = (run.stdout + run.stderr).decode(errors="replace")
    alert_lines = [line for line in output.splitlines() if "alert" in line and ":error:" in line]
    assert alert_lines, output
    d = diagnose_text(alert_lines[0])
    assert (d.key, d.who) == ("certificate_required", "server")


@pytest.mark.parametrize("which", ["s_client summary", "python error text"])
def test_diagnose_text_on_common_verify_lines(ca, which):
    if which == "s_client summary":
        line = "Verify return code: 10 (certificate has expired)"
    else:
        cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
                                    not_after=dt.datetime(2021, 1, 1, tzinfo=UTC))
        with TLSServer(cred) as s:
            line = connect(s, trust=ca).diagnosis.raw  # str() of the real SSLCertVerificationError
        assert "certificate verify failed" in line
    assert diagnose_text(line).key == "expired"


@pytest.mark.parametrize("case", [
    "expired",
    "not_yet_valid",
    "hostname",
    "ip_address",
    "self_signed",
    "unknown_root",
    "missing_intermediate",
    "wrong_usage",
    "revoked",
    "weak_ca_key",
])
def test_diagnose_text_of_python_error_text_matches_diagnose(ca, inter, good, tmp_path: Path, case):
    """A log line holding str() of a real SSLCertVerificationError explains like the error itself."""
    kwargs: dict = {"trust": ca}
    send_intermediates = True
    if case == "expired":
        cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
                                    not_after=dt.datetime(2021, 1, 1, tzinfo=UTC))
    elif case == "not_yet_valid":
        cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2040, 1, 1, tzinfo=UTC))
    elif case == "hostname":
        cred, kwargs["server_hostname"] = good, "wrong.course.test"
    elif case == "ip_address":
        cred, kwargs["server_hostname"] = good, "127.0.0.2"
    elif case == "self_signed":
        cred = self_signed_cert("localhost")
    elif case == "unknown_root":
        cred = CertificateAuthority("Elsewhere").issue_server_cert("localhost")
    elif case == "missing_intermediate":
        cred, send_intermediates = inter.issue_server_cert("localhost"), False
    elif case == "wrong_usage":
        cred = ca.issue_server_cert("localhost", usage="client")
    elif case == "revoked":
        cred = ca.issue_server_cert("localhost")
        ca.revoke(cred)
        cafile = tmp_path / "ca-and-crl.pem"
        cafile.write_bytes(ca.cert_pem + ca.crl_pem())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(cafile))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        kwargs = {"context": ctx}
    else:  # weak_ca_key
        weak = CertificateAuthority("Weak Root", key_type="rsa1024")
        cred, kwargs["trust"] = weak.issue_server_cert("localhost"), weak
    with TLSServer(cred, send_intermediates=send_intermediates) as s:
        d = connect(s, **kwargs).diagnosis
    assert d is not None and d.raw.startswith("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ")
    from_text = diagnose_text(d.raw)
    assert (from_text.key, from_text.who) == (d.key, d.who), d.raw
    assert_human(from_text)


# --- unknown errors, wrong types -----------------------------------------------------------------


def test_unknown_ssl_reason_keeps_the_raw_text(good, ca):
    other = ca.issue_server_cert("localhost")
    cert_path, _ = good.files("explain-mismatch-cert")
    _, key_path = other.files("explain-mismatch-key")
    with pytest.raises(ssl.SSLError) as info:  # a real OpenSSL error the table does not know
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    d = diagnose(info.value)
    assert d.key == "unknown"
    assert d.code == "KEY_VALUES_MISMATCH"
    assert d.raw == str(info.value)
    assert "KEY_VALUES_MISMATCH" in d.why


@pytest.mark.parametrize("which", ["doctest", "set_ciphers", "unknown reason"])
def test_ssl_errors_without_reason_attribute(which):
    if which == "doctest":
        error = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required")
        d = diagnose(error, side="client")
        assert (d.who, d.key) == ("server", "certificate_required")
    elif which == "set_ciphers":
        with pytest.raises(ssl.SSLError) as info:
            client_context(None).set_ciphers("NO-SUCH-CIPHER")
        d = diagnose(info.value)
        assert d.key == "unknown" and "No cipher can be selected" in d.raw
    else:
        error = ssl.SSLError(1, "[SSL: SOMETHING_NEW] something new (_ssl.c:1234)")
        d = diagnose(error)
        assert d.key == "unknown" and d.code == "SOMETHING_NEW" and "something new" in d.why


@pytest.mark.parametrize("error", [ValueError("nope"), KeyError("k"), RuntimeError("r"), Exception("e")])
def test_diagnose_of_a_non_connection_error_is_a_type_error(error):
    with pytest.raises(TypeError, match="diagnose"):
        diagnose(error)


@pytest.mark.parametrize("error, key, who", [
    (ConnectionRefusedError(111, "Connection refused"), "connection_refused", "server"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection_reset", "server"),
    (BrokenPipeError(32, "Broken pipe"), "connection_reset", "server"),
    (TimeoutError("timed out"), "timeout", "client"),
])
def test_plain_socket_errors(error, key, who):
    d = diagnose(error, side="client")
    assert (d.key, d.who) == (key, who)
    assert_human(d)


def test_other_os_error_is_generic():
    d = diagnose(OSError(99, "Cannot assign requested address"))
    assert d.key == "unknown" and "Cannot assign" in d.raw


# --- the tables themselves -------------------------------------------------------------------------


def _verify_error(code: int) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"certificate verify failed (code {code})")
    err.verify_code, err.verify_message = code, f"message {code}"
    err.reason = "CERTIFICATE_VERIFY_FAILED"
    return err


def _reason_error(reason: str) -> ssl.SSLError:
    err = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1006)")
    err.reason = reason  # as _ssl sets it
    return err


_TABLE_CASES = (
    [pytest.param("verify", str(code), id=f"verify-{code}") for code in VERIFY_CODES]
    + [pytest.param("alert", name, id=f"alert-{name}") for name in ALERTS]
    + [pytest.param("reason", name, id=f"reason-{name}") for name in REASONS]
)


@pytest.mark.parametrize("kind, name", _TABLE_CASES)
@pytest.mark.parametrize("side", ["client", "server"])
def test_every_table_row_reads_as_plain_english(kind, name, side):
    other = "server" if side == "client" else "client"
    if kind == "verify":
        d = diagnose(_verify_error(int(name)), side=side)
        assert d.key == VERIFY_CODES[int(name)].key and d.who == side
    elif kind == "alert":
        d = diagnose(_reason_error(f"TLSV1_ALERT_{name.upper()}"), side=side)
        assert d.key == ALERTS[name][1].key and d.who == other
        assert d.code == f"alert {name} ({ALERTS[name][0]}) received"
    else:
        d = diagnose(_reason_error(name), side=side)
        assert d.key == REASONS[name].key and d.who == side
    assert_human(d)


# --- presentation ----------------------------------------------------------------------------------


def test_diagnosis_str_repr_html(ca):
    with TLSServer(ca.issue_server_cert("localhost", usage="client")) as s:
        d = connect(s, trust=ca).diagnosis
    assert str(d) == f"The client refused: {d.what}. {d.why} Fix: {d.fix} [{d.code}]"
    assert repr(d) == f"<Diagnosis wrong_usage: the client refused: {d.what} [{d.code}]>"
    page = d._repr_html_()
    assert page.startswith("<div class='tlslab-diagnosis'")
    assert "✗ The server&#x27;s certificate is not meant for this use" in page
    for text in ("the client", "how to fix", "OpenSSL says", "verify error 26"):
        assert text in page


def test_diagnosis_html_escapes():
    d = diagnose_text("<script>alert(1)</script>")
    page = d._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
