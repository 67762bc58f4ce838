"""The scanner: each planted weakness found, none on a hardened server, agreement with
``openssl s_client``, the loopback rule, exit codes and the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import socket
import subprocess
import sys

import pytest

from _tools import require_tool
from tlslab import CertificateAuthority, TCPServer, TLSServer
from tlslab.scan import (
    PROFILES,
    ScanError,
    add_command,
    classify_suite,
    main,
    parse_target,
    probe_suite,
    probe_version,
    scan,
    tls12_suites,
)

UTC = dt.timezone.utc
AEAD = "ECDHE+AESGCM:ECDHE+CHACHA20"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("Scan Test CA")


def short_cert(ca: CertificateAuthority, key_type: str = "ecdsa", days: int = 90, host: str = "localhost"):
    start = dt.datetime.now(UTC) - dt.timedelta(days=1)
    return ca.issue_server_cert(host, "127.0.0.1", key_type=key_type, not_before=start, not_after=start + dt.timedelta(days=days))


@pytest.fixture(scope="module")
def weak(ca):
    """Everything old at once: TLS 1.0–1.3, CBC and static RSA, an RSA key, a 20-year certificate."""
    cred = ca.issue_server_cert("localhost", "127.0.0.1", key_type="rsa")
    with TLSServer(cred, name="scan-weak", min_version="1.0", legacy=True, ciphers="ECDHE+AESGCM:ECDHE+AES:kRSA+AES") as server:
        yield server


@pytest.fixture(scope="module")
def hardened(ca):
    """TLS 1.2 and 1.3, ECDHE + AEAD only, a 90-day ECDSA certificate, client certificates required."""
    with TLSServer(short_cert(ca), name="scan-hardened", ciphers=AEAD, client_cert="required", client_ca=ca) as server:
        yield server


@pytest.fixture(scope="module")
def client_cert(ca):
    return ca.issue_client_cert("spiffe://course.test/scanner")


@pytest.fixture(scope="module")
def weak_scan(weak, ca):
    return scan(weak, ca=ca)


# --- planted weaknesses, one at a time ----------------------------------------------------------


def test_weak_server_every_weakness_found(weak_scan):
    assert weak_scan.accepted_versions == ["TLS 1.3", "TLS 1.2", "TLS 1.1", "TLS 1.0"]
    assert weak_scan.keys == ["legacy_versions", "static_rsa_suites", "cbc_suites", "long_lifetime"]
    assert weak_scan.finding("legacy_versions").severity == "high"
    assert "TLS 1.0 and TLS 1.1" in weak_scan.finding("legacy_versions").what
    names = {s.name for s in weak_scan.suites}
    assert {"AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"} <= names
    assert "ECDHE-RSA-AES128-GCM-SHA256" in names
    assert weak_scan.exit_code == 1 and not weak_scan.clean


def test_hardened_server_is_clean(hardened, ca, client_cert):
    result = scan(hardened, ca=ca, cert=client_cert, profile="intermediate", require_client_cert=True)
    assert result.findings == [] and result.exit_code == 0 and result.clean
    assert result.accepted_versions == ["TLS 1.3", "TLS 1.2"]
    assert sorted(s.name for s in result.suites) == [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
    assert result.client_auth.policy == "required" and result.client_auth.with_cert == "accepted"
    assert result.certificate.trust == "trusted" and result.certificate.lifetime_days == 90
    r = result.resumption
    assert (r.tls12_session_id, r.tls12_ticket, r.tls13_ticket) == (True, True, True)
    assert "Verdict: clean against the intermediate + mTLS profile (exit code 0)" in str(result)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ciphers": "ECDHE+AESGCM:ECDHE+AES"}, ["cbc_suites"]),
        ({"ciphers": "ECDHE+AESGCM:kRSA+AESGCM", "key_type": "rsa"}, ["static_rsa_suites"]),
        ({"ciphers": AEAD, "days": 825}, ["long_lifetime"]),
        # TLS 1.0/1.1 have no AEAD suites: a server that speaks them needs a CBC suite too.
        ({"ciphers": AEAD + ":ECDHE-ECDSA-AES128-SHA", "min_version": "1.1", "legacy": True}, ["legacy_versions", "cbc_suites"]),
        ({"ciphers": AEAD, "min_version": "1.0", "legacy": True}, []),
        ({"ciphers": AEAD, "max_version": "1.2"}, ["no_tls13"]),
        ({"ciphers": AEAD, "key_type": "rsa1024", "legacy": True}, ["weak_key"]),
        ({"ciphers": "ECDHE+AESGCM:AECDH-AES128-SHA", "legacy": True}, ["anonymous", "cbc_suites"]),
        ({"ciphers": "ECDHE+AESGCM:NULL-SHA256", "key_type": "rsa", "legacy": True}, ["null_cipher", "static_rsa_suites"]),
    ],
    ids=["cbc", "static-rsa", "long-lifetime", "tls1.1", "tls1.0-without-suites", "no-tls1.3", "rsa1024", "anonymous", "null"],
)
def test_each_planted_weakness_alone(ca, settings, expected):
    settings = dict(settings)
    cred = short_cert(ca, key_type=settings.pop("key_type", "ecdsa"), days=settings.pop("days", 90))
    with TLSServer(cred, **settings) as server:
        result = scan(server, ca=ca)
    assert result.keys == expected
    assert result.exit_code == (1 if expected else 0)


def test_small_rsa_key_reported(ca):
    with TLSServer(short_cert(ca, key_type="rsa1024"), ciphers=AEAD, legacy=True) as server:
        result = scan(server, ca=ca)
    assert result.certificate.key == "RSA 1024"
    assert result.finding("weak_key").what == "its certificate has an RSA 1024 key"


def test_expired_certificate(ca):
    cred = ca.issue_server_cert("localhost", not_before=dt.datetime(2024, 1, 1, tzinfo=UTC), not_after=dt.datetime(2025, 1, 1, tzinfo=UTC))
    with TLSServer(cred, ciphers=AEAD) as server:
        result = scan(server, ca=ca)
    assert result.keys[0] == "expired"
    assert result.finding("expired").severity == "critical"
    assert result.finding("expired").what == "its certificate expired on 2025-01-01"
    assert result.certificate.validity == "expired"


def test_wrong_host_and_untrusted_ca(ca):
    stranger = CertificateAuthority("Stranger CA")
    with TLSServer(short_cert(stranger, host="other.test"), ciphers=AEAD) as server:
        result = scan(server, ca=ca)
        unchecked = scan(server)
    assert result.keys == ["hostname_mismatch", "untrusted"]
    assert not result.certificate.host_ok
    assert "other.test" in result.finding("hostname_mismatch").why
    # Without --ca the trust is unknown: said so (info), but it does not fail the scan.
    assert "trust_not_checked" in unchecked.keys and "untrusted" not in unchecked.keys
    assert unchecked.certificate.trust == "untrusted"
    assert unchecked.finding("trust_not_checked").severity == "info"


def test_client_auth_demanded_by_profile(ca):
    with TLSServer(short_cert(ca), ciphers=AEAD) as none, TLSServer(short_cert(ca), ciphers=AEAD, client_cert="optional", client_ca=ca) as optional:
        assert scan(none, ca=ca).clean  # the plain profile does not ask for mutual TLS
        assert scan(none, ca=ca, profile="intermediate+mtls").keys == ["no_client_auth"]
        opt = scan(optional, ca=ca, require_client_cert=True)
    assert opt.client_auth.policy == "optional"
    assert opt.keys == ["client_auth_optional"]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_required_client_certificate_detected_in_each_version(ca, version):
    with TLSServer(short_cert(ca), ciphers=AEAD, min_version=version, max_version=version, client_cert="required", client_ca=ca) as server:
        result = scan(server, ca=ca, require_client_cert=True, profile="modern" if version == "1.3" else "intermediate")
    assert result.client_auth.policy == "required"
    assert not result.has("no_client_auth")
    # Without a client certificate, resumption cannot be tried: said so.
    assert "not tested" in result.resumption.text and "--cert" in result.resumption.text


def test_a_refused_client_certificate_is_reported_not_counted(hardened, ca):
    stranger = CertificateAuthority("Stranger CA").issue_client_cert("spiffe://elsewhere.test/x")
    result = scan(hardened, ca=ca, cert=stranger, require_client_cert=True)
    assert result.client_auth.with_cert.startswith("refused")
    assert result.finding("client_cert_refused").severity == "info"
    assert result.exit_code == 0


def test_modern_profile(hardened, ca, client_cert):
    both = scan(hardened, ca=ca, cert=client_cert, profile="modern")
    assert both.keys == ["tls12_enabled"]
    with TLSServer(short_cert(ca), min_version="1.3") as only13:
        result = scan(only13, ca=ca, profile="modern")
    assert result.clean and result.suites == [] and "TLS 1.2 cipher suites" not in str(result)
    with TLSServer(short_cert(ca), ciphers=AEAD, max_version="1.2") as only12:
        assert scan(only12, ca=ca, profile="modern").keys == ["no_tls13", "tls12_enabled"]


def test_regrading_needs_no_new_probes(weak_scan):
    modern = weak_scan.against("modern")
    assert modern.profile is PROFILES["modern"]
    assert "tls12_enabled" in modern.keys and "tls12_enabled" not in weak_scan.keys
    assert modern.versions is weak_scan.versions


def test_session_resumption_tls12_only(ca):
    with TLSServer(short_cert(ca), ciphers=AEAD, max_version="1.2") as server:
        result = scan(server, ca=ca)
    assert (result.resumption.tls12_session_id, result.resumption.tls12_ticket, result.resumption.tls13_ticket) == (True, True, None)
    assert result.resumption.text == "TLS 1.2 session IDs yes, session tickets yes"


# --- the scanner against openssl s_client ---------------------------------------------------------


def s_client(port: int, *args: str) -> str | None:
    """The suite ``openssl s_client`` negotiated with ``args``, or None when the handshake failed."""
    openssl = require_tool("openssl")
    proc = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
        input="", capture_output=True, text=True, timeout=20, check=False,
    )
    found = re.search(r"^New, (\S+), Cipher is (\S+)$", proc.stdout, re.M)
    if proc.returncode != 0 or found is None or found.group(2) == "(NONE)":
        return None
    return found.group(2)


_S_CLIENT_VERSION = {"TLS 1.0": "-tls1", "TLS 1.1": "-tls1_1", "TLS 1.2": "-tls1_2", "TLS 1.3": "-tls1_3"}


@pytest.mark.parametrize("which", ["weak", "aead"])
def test_versions_agree_with_s_client(request, ca, which):
    require_tool("openssl")
    server = request.getfixturevalue("weak") if which == "weak" else None
    context = TLSServer(short_cert(ca), ciphers=AEAD) if server is None else None
    if context is not None:
        server = context.start()
    try:
        result = scan(server, ca=ca)
        for version, flag in _S_CLIENT_VERSION.items():
            extra = ["-cipher", "DEFAULT:@SECLEVEL=0"] if version in ("TLS 1.0", "TLS 1.1") else []
            agreed = s_client(server.port, flag, *extra)
            assert result.versions[version].accepted == (agreed is not None), version
            if agreed is not None:
                assert result.versions[version].suite == agreed, version
    finally:
        if context is not None:
            context.stop()


def test_suites_agree_with_s_client_one_by_one(weak, weak_scan):
    require_tool("openssl")
    accepted = {s.name for s in weak_scan.suites}
    for suite in tls12_suites():
        agreed = s_client(weak.port, "-tls1_2", "-cipher", f"{suite.name}:@SECLEVEL=0")
        assert (suite.name in accepted) == (agreed == suite.name), suite.name
    assert weak_scan.suites_probed == len(tls12_suites())


def test_probe_helpers(weak):
    assert probe_version(weak, "1.0").accepted
    assert probe_version(weak, "TLS 1.3").suite == "TLS_AES_256_GCM_SHA384"
    assert probe_suite(weak, "AES128-SHA") and not probe_suite(weak, "ECDHE-ECDSA-AES128-GCM-SHA256")
    with pytest.raises(ScanError, match="SSL 3.0"):
        probe_version(weak, "SSLv3")


# --- the loopback rule, errors and exit codes -------------------------------------------------


@pytest.mark.parametrize("target", ["example.com:443", "10.0.0.1:443", "192.168.1.1:8443", "[2001:db8::1]:443", ("8.8.8.8", 53)])
def test_non_loopback_refused_before_anything_is_sent(monkeypatch, target):
    def forbidden(*args, **kwargs):
        raise AssertionError("the scanner touched the network")

    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    with pytest.raises(ScanError, match="refusing to scan .* Nothing was sent"):
        scan(target)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("127.0.0.1:8443", ("127.0.0.1", 8443)), ("localhost:1", ("127.0.0.1", 1)), ("[::1]:443", ("::1", 443)),
     ("127.8.9.10:99", ("127.8.9.10", 99)), (("127.0.0.1", 5), ("127.0.0.1", 5))],
)
def test_parse_target(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize("bad", ["127.0.0.1", "localhost:http", "127.0.0.1:0", "127.0.0.1:70000", "[::1]", 42])
def test_parse_target_errors(bad):
    with pytest.raises(ScanError):
        parse_target(bad)


def test_could_not_scan_exit_code_2(ca):
    with TCPServer() as plaintext:
        result = scan(plaintext)
    assert result.exit_code == 2 and "TLS server at all" in result.error
    stopped = TLSServer(short_cert(ca))
    with pytest.raises(ScanError, match="not running"):
        scan(stopped)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nothing = scan(f"127.0.0.1:{port}")
    assert nothing.exit_code == 2 and nothing.error.startswith("nothing answers")
    assert str(nothing).endswith("Verdict: could not scan (exit code 2)")


def test_bad_inputs_are_clear_errors(hardened, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ScanError, match="no PEM certificate"):
        scan(hardened, ca=junk)
    with pytest.raises(ScanError, match="cannot read the CA file"):
        scan(hardened, ca=tmp_path / "missing.pem")
    with pytest.raises(ScanError, match="unknown profile"):
        scan(hardened, profile="paranoid")
    with pytest.raises(ScanError, match="client certificate"):
        scan(hardened, cert=(junk, junk))


# --- stable output ------------------------------------------------------------------------------


def test_report_is_stable_and_shows_no_port(weak, ca, weak_scan):
    again = scan(weak, ca=ca)
    assert str(again) == str(weak_scan) and repr(again) == repr(weak_scan)
    assert again._repr_html_() == weak_scan._repr_html_()
    port = str(weak.port)
    for text in (str(weak_scan), repr(weak_scan), weak_scan._repr_html_()):
        assert port not in text
    assert repr(weak_scan) == (
        "<ScanResult localhost (127.0.0.1) vs intermediate: exit code 1: "
        "legacy_versions, static_rsa_suites, cbc_suites, long_lifetime>"
    )
    text = str(weak_scan)
    assert text.splitlines()[0] == "TLS scan of localhost (127.0.0.1), graded against the intermediate profile"
    assert "  TLS 1.0  accepted (ECDHE-RSA-AES256-SHA)" in text
    assert "  SSL 3.0  not probed (OpenSSL 3 cannot speak it)" in text
    assert "  AES128-SHA                   static RSA (no forward secrecy), CBC" in text
    assert text.endswith("Verdict: 4 findings against the intermediate profile (2 high, 2 medium): exit code 1")


def test_classify_suite():
    assert classify_suite("ECDHE-ECDSA-AES128-GCM-SHA256") == ()
    assert classify_suite("ECDHE-RSA-CHACHA20-POLY1305") == ()
    assert classify_suite("ECDHE-RSA-AES128-SHA") == ("cbc_suites",)
    assert classify_suite("AES128-GCM-SHA256") == ("static_rsa_suites",)
    assert classify_suite("DHE-RSA-AES128-GCM-SHA256") == ("dhe_suites",)
    # Suites this OpenSSL no longer has are judged by name.
    assert classify_suite("DES-CBC3-SHA") == ("3des_suites", "static_rsa_suites", "cbc_suites")
    assert classify_suite("RC4-SHA") == ("rc4_suites", "static_rsa_suites")
    assert classify_suite("NULL-SHA")[0] == "null_cipher"
    assert "anonymous" in classify_suite("ADH-AES128-SHA")


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("scan-cli") / "ca.pem"
    path.write_bytes(ca.cert_pem)
    return path


def test_cli_text_report_and_exit_codes(weak, hardened, ca_file, client_cert, capsys):
    assert main([f"localhost:{weak.port}", "--ca", str(ca_file)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TLS scan of localhost (127.0.0.1), graded against the intermediate profile\n")
    assert "[high] it accepts TLS 1.0 and TLS 1.1" in out and str(weak.port) not in out
    cert_file, key_file = client_cert.files("scan-cli-client")
    code = main([f"127.0.0.1:{hardened.port}", "--ca", str(ca_file), "--cert", str(cert_file), "--key", str(key_file),
                 "--require-client-cert"])
    assert code == 0
    assert capsys.readouterr().out.rstrip().endswith("clean against the intermediate + mTLS profile (exit code 0)")


def test_cli_json(weak, ca_file, capsys):
    assert main([f"127.0.0.1:{weak.port}", "--ca", str(ca_file), "--json", "--profile", "modern"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "modern" and data["exit_code"] == 1
    assert data["versions"] == {"TLS 1.3": True, "TLS 1.2": True, "TLS 1.1": True, "TLS 1.0": True}
    assert {f["key"] for f in data["findings"]} >= {"legacy_versions", "tls12_enabled"}
    assert data["certificate"]["trust"] == "trusted"


def test_cli_errors(capsys, ca_file):
    assert main(["example.com:443"]) == 2
    assert "tlslab scan: error: refusing to scan 'example.com'" in capsys.readouterr().err
    assert main(["127.0.0.1:8443", "--cert", str(ca_file)]) == 2
    assert "--cert and --key go together" in capsys.readouterr().err
    assert main(["--profile", "lax", "127.0.0.1:1"]) == 2
    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: tlslab scan [-h] [--ca FILE] [--cert FILE] [--key FILE]")


def test_add_command_wires_a_subcommand(weak, ca_file, capsys):
    parser = argparse.ArgumentParser(prog="tlslab")
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["scan", f"127.0.0.1:{weak.port}", "--ca", str(ca_file)])
    assert args.func(args) == 1
    assert "Verdict: 4 findings" in capsys.readouterr().out


def test_cli_as_a_real_process(hardened, ca_file):
    proc = subprocess.run(
        [sys.executable, "-m", "tlslab.scan", f"127.0.0.1:{hardened.port}", "--ca", str(ca_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Client certificate: required: a client without a certificate is refused" in proc.stdout
    assert "Session resumption: not tested (needs a client certificate: scan with --cert and --key)" in proc.stdout
