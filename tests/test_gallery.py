"""The gallery of broken servers: real servers, real handshakes, and outside opinions from OpenSSL.

Every case must produce exactly its diagnosis, every time; ``openssl verify`` (on the same
certificates) and ``openssl s_client`` (against the same live server) must reach the same verdict;
the chain figure must show the broken link in red.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from _tools import require_tool, run
from tlslab import gallery, plots
from tlslab.explain import Diagnosis
from tlslab.gallery import CASES, HOST, BrokenLink, GalleryResult, GalleryTable, refine_diagnosis, run_all, run_case
from tlslab.pki import CertificateAuthority
from tlslab.servers import running_servers

RED = "#c0392b"
DEFECTS = [name for name, case in CASES.items() if case.expected is not None]


@pytest.fixture(scope="module")
def table() -> GalleryTable:
    return run_all()


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


# --- every case, exactly its diagnosis ----------------------------------------------------------


def test_the_gallery_has_every_case_of_the_chapter():
    assert list(CASES) == [
        "control", "expired", "not_yet_valid", "wrong_host", "self_signed", "unknown_root",
        "missing_intermediate", "wrong_usage", "revoked", "key_too_small",
    ]
    for case in CASES.values():
        assert case.description and "\n" not in case.description
        assert (case.expected is None) == (case.refused_by is None)
    # Each defect has its own diagnosis: no two cases share one.
    assert len({CASES[name].expected for name in DEFECTS}) == len(DEFECTS)


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_yields_exactly_its_diagnosis_five_times(name):
    case = CASES[name]
    seen = set()
    for _ in range(5):
        result = run_case(name)
        assert result.as_expected, result
        assert result.key == case.expected
        assert result.refused_by == case.refused_by
        assert result.ok is (case.expected is None)
        seen.add((result.key, result.refused_by, result.diagnosis.code if result.diagnosis else None, result.alert))
    assert len(seen) == 1, seen  # deterministic, down to the OpenSSL code and the alert


def test_what_each_case_really_produces(table):
    """The OpenSSL verify code the client hit and the alert it sent (pinned: the lesson quotes them).

    The code's wording varies a little between OpenSSL versions; its number does not.
    """
    produced = {r.name: (r.diagnosis.code.split(":")[0] if r.diagnosis else None, r.alert) for r in table}
    assert produced == {
        "control": (None, None),
        "expired": ("verify error 10", "certificate_expired (45)"),
        "not_yet_valid": ("verify error 9", "bad_certificate (42)"),
        "wrong_host": ("verify error 62", "bad_certificate (42)"),
        "self_signed": ("verify error 18", "unknown_ca (48)"),
        "unknown_root": ("verify error 20 at depth 1", "unknown_ca (48)"),
        "missing_intermediate": ("verify error 20 at depth 0", "unknown_ca (48)"),
        "wrong_usage": ("verify error 26", "unsupported_certificate (43)"),
        "revoked": ("verify error 23", "certificate_revoked (44)"),
        "key_too_small": ("verify error 66", "bad_certificate (42)"),
    }


def test_the_server_logs_the_alert_the_client_sent(table):
    for result in table:
        view = result.report.server_view
        assert view is not None
        if result.ok:
            assert view.ok
        else:
            assert not view.ok and view.failure is not None
            assert view.failure.code == f"alert {result.alert} received"


def test_the_control_succeeds_with_tls_1_3(table):
    control = table["control"]
    assert control.ok and control.diagnosis is None and control.broken is None
    assert control.report.version == "TLSv1.3"


def test_run_all_table(table):
    assert len(table) == len(CASES) and table.all_as_expected
    assert [r.name for r in table] == list(CASES)
    assert table[0] is table["control"]
    with pytest.raises(KeyError):
        table["nope"]
    text = repr(table)
    assert text.splitlines()[0].split() == ["case", "refused", "by", "diagnosis", "OpenSSL", "says", "as", "expected"]
    for name in CASES:
        assert name in text
    assert "✗" not in text
    page = table._repr_html_()
    assert page.count("<tr>") == len(CASES) + 1 and "✓" in page


def test_the_client_sees_what_the_server_sent(table):
    """The chain comes from the handshake's Certificate message, as the client received it."""
    pki = gallery.gallery_pki()
    for result in table:
        credential = pki.credential(result.name)
        expected = credential.chain if result.case.send_intermediates else [credential.certificate]
        assert result.sent == expected, result.name
    assert len(table["missing_intermediate"].sent) == 1
    assert len(table["unknown_root"].sent) == 2


def test_chains_run_from_leaf_to_root(table):
    pki = gallery.gallery_pki()
    for result in table:
        chain = result.chain
        assert chain[0] == result.sent[0]
        top = chain[-1]
        assert top.issuer == top.subject  # ends at a root (the self-signed leaf is its own)
        for child, parent in zip(chain, chain[1:]):
            child.verify_directly_issued_by(parent)
    assert table["control"].chain[-1] == pki.root.certificate
    assert table["unknown_root"].chain[-1] == pki.unknown_root.certificate
    assert len(table["self_signed"].chain) == 1
    assert table["missing_intermediate"].not_sent == [1]
    assert table["control"].not_sent == []


@pytest.mark.parametrize(
    "name, index, label",
    [
        ("expired", 0, "expired on 2025-01-01"),
        ("not_yet_valid", 0, "not valid before 2040-01-01"),
        ("wrong_host", 0, "for wrong.host.test, not localhost"),
        ("self_signed", 0, "self-signed: nobody vouches for it"),
        ("unknown_root", 2, "unknown root: not in the trust store"),
        ("missing_intermediate", 1, "not sent by the server"),
        ("wrong_usage", 0, "a client-only certificate (clientAuth)"),
        ("revoked", 0, "revoked: on its CA's revocation list"),
        ("key_too_small", 0, "key too small: RSA 1024"),
    ],
)
def test_the_broken_link(table, name, index, label):
    assert table[name].broken == BrokenLink(index, label, missing=name == "missing_intermediate")


def test_the_exact_diagnoses_read_well(table):
    missing = table["missing_intermediate"].diagnosis
    assert "TLS Lab Gallery Issuing CA" in missing.why and "full chain" in missing.fix
    unknown = table["unknown_root"].diagnosis
    assert "Unknown Root CA" in unknown.why and "depth 1" in unknown.why
    small = table["key_too_small"].diagnosis
    assert "RSA 1024" in small.why and "80 bits" in small.why and "112" in small.why
    for result in table:
        if result.diagnosis:
            assert result.diagnosis.who == "client"
            assert str(result.diagnosis).startswith("The client refused")


def test_refine_leaves_other_diagnoses_alone(table):
    expired = table["expired"].report.diagnosis
    assert refine_diagnosis(expired, table["expired"].sent) is expired
    unrefined = table["unknown_root"].report.diagnosis
    assert unrefined.key == "unknown_issuer"  # what explain says from the verify code alone
    assert refine_diagnosis(unrefined, []) is unrefined  # nothing seen, nothing to refine
    server_side = Diagnosis("unknown_issuer", "server", "w", "y", "f", "verify error 20: x")
    assert refine_diagnosis(server_side, table["unknown_root"].sent) is server_side


# --- reprs: stable, with no ports or timings ------------------------------------------------------


def test_reprs_are_stable_between_runs(table):
    for name in CASES:
        again = run_case(name)
        first = table[name]
        assert repr(again) == repr(first)
        assert str(again) == str(first)
        assert again._repr_html_() == first._repr_html_()
    assert repr(run_all()) == repr(table)


def test_reprs_hold_no_ports_or_timings(table):
    for result in table:
        port = str(result.report.address[1])
        for text in (repr(result), str(result), result._repr_html_()):
            assert port not in text and " ms" not in text and "seconds" not in text
    for text in (repr(table), table._repr_html_()):
        assert not re.search(r"127\.0\.0\.1:\d+", text)


def test_result_texts(table):
    assert repr(table["control"]) == "<GalleryResult control: handshake completed (TLSv1.3)>"
    assert repr(table["expired"]) == "<GalleryResult expired: the client refused: expired [verify error 10: certificate has expired]>"
    card = table["missing_intermediate"]._repr_html_()
    for words in ("who refused", "how to fix", "OpenSSL says", "not sent by the server", "✓ as expected", "the server&#x27;s log"):
        assert words in card
    assert "the client sent the alert unknown_ca (48)" in str(table["missing_intermediate"])
    assert "handshake completed: TLSv1.3" in str(table["control"])


def test_a_result_that_is_not_as_expected_says_so(table):
    wrong = GalleryResult(
        case=CASES["expired"], report=table["control"].report, diagnosis=None, chain=table["control"].chain,
        sent=table["control"].sent, broken=None,
    )
    assert not wrong.as_expected
    assert "✗ NOT as expected" in str(wrong) and "color:#c0392b" in wrong._repr_html_()


# --- the by-hand verdict agrees -------------------------------------------------------------------


def test_verifying_by_hand_reaches_the_same_verdict(table):
    for result in table:
        verdict = result.by_hand()
        assert verdict.key == result.case.expected, (result.name, verdict)


# --- arguments, other CAs, and servers left behind ------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="choose one of"):
        run_case("expired.badssl.com")
    with pytest.raises(TypeError):
        run_case(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        run_case("expired", ca="my CA")  # type: ignore[arg-type]


def test_no_server_outlives_an_experiment(table):
    run_case("expired")
    assert not [name for name in running_servers() if name.startswith("gallery-")]


def test_the_gallery_on_your_own_root():
    mine = CertificateAuthority("My Course Root")
    results = run_all(ca=mine)
    assert results.all_as_expected, repr(results)
    assert results["control"].chain[-1] == mine.certificate
    assert results["control"].chain[1].issuer == mine.certificate.subject
    assert gallery.gallery_pki(mine) is gallery.gallery_pki(mine)  # built once


def test_the_gallery_on_your_own_intermediate():
    root = CertificateAuthority("My Other Root")
    issuing = root.intermediate("My Issuing CA")
    for name in ("control", "missing_intermediate", "revoked", "unknown_root"):
        result = run_case(name, ca=issuing)
        assert result.as_expected, result
        assert result.chain[-1] == root.certificate or name == "unknown_root"
    assert "My Issuing CA" in run_case("missing_intermediate", ca=issuing).diagnosis.why


def test_the_cas_are_built_once():
    pki = gallery.gallery_pki()
    assert gallery.gallery_pki() is pki
    assert pki.credential("key_too_small") is pki.credential("key_too_small")
    assert "TLS Lab Gallery Root CA" in repr(pki)


def test_serve_and_client_context_for():
    server = gallery.serve("revoked")
    try:
        assert server.running and server.name == "gallery-revoked"
        again = gallery.serve("revoked")  # a re-run cell replaces its server
        assert not server.running and again.running
        ctx = gallery.client_context_for("revoked")
        assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
        from tlslab.client import connect

        assert connect(again, context=ctx).diagnosis.key == "revoked"
    finally:
        again.stop()
    assert "gallery-revoked" not in running_servers()


def test_parse_certificate_message_rejects_other_messages():
    with pytest.raises(ValueError):
        gallery.parse_certificate_message(b"\x01\x00\x00\x00")
    with pytest.raises(ValueError):
        gallery.parse_certificate_message(b"")


def test_parse_certificate_message_tls12_and_13(table):
    certs = table["control"].sent
    ders = [c.public_bytes(Encoding.DER) for c in certs]
    tls12 = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    tls12 = len(tls12).to_bytes(3, "big") + tls12
    tls13 = b"".join(len(d).to_bytes(3, "big") + d + b"\x00\x00" for d in ders)
    tls13 = b"\x00" + len(tls13).to_bytes(3, "big") + tls13
    for body, is13 in ((tls12, False), (tls13, True)):
        message = b"\x0b" + len(body).to_bytes(3, "big") + body
        assert gallery.parse_certificate_message(message, tls13=is13) == certs


# --- outside opinions: OpenSSL's own command-line tools -------------------------------------------

# OpenSSL's verify codes, mapped to the gallery's keys. Error 20 is where the depth matters:
# at depth 0 the leaf's issuer is missing, higher up the chain ends at an unknown root.
OPENSSL_KEYS = {10: "expired", 9: "not_yet_valid", 62: "hostname_mismatch", 18: "self_signed", 26: "wrong_usage",
                23: "revoked", 66: "key_too_small"}


def _key_from_openssl(code: int, depth: int) -> str:
    if code == 20:
        return "missing_intermediate" if depth == 0 else "unknown_root"
    return OPENSSL_KEYS.get(code, f"openssl error {code}")


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _files(tmp_path: Path, result: GalleryResult) -> dict[str, Path]:
    files = {"root": tmp_path / "root.pem", "leaf": tmp_path / "leaf.pem"}
    files["root"].write_bytes(result.trusted_root.public_bytes(Encoding.PEM))
    files["leaf"].write_bytes(_pem(result.sent[:1]))
    if len(result.sent) > 1:
        files["inter"] = tmp_path / "inter.pem"
        files["inter"].write_bytes(_pem(result.sent[1:]))
    if result.crl_pem:
        files["crl"] = tmp_path / "crl.pem"
        files["crl"].write_bytes(result.crl_pem)
    return files


# Python's ssl checks the purpose (serverAuth) and runs at security level 2; openssl's tools need
# to be told so (their defaults: no purpose, and the system's security level).
STRICT = ["-purpose", "sslserver", "-auth_level", "2"]


@pytest.mark.parametrize("name", list(CASES))
def test_openssl_verify_agrees(tmp_path, openssl, table, name):
    result = table[name]
    files = _files(tmp_path, result)
    command = [openssl, "verify", "-CAfile", str(files["root"]), *STRICT, "-verify_hostname", HOST]
    if "inter" in files:
        command += ["-untrusted", str(files["inter"])]
    if "crl" in files:
        command += ["-crl_check", "-CRLfile", str(files["crl"])]
    done = run([*command, str(files["leaf"])])
    output = done.stdout + done.stderr
    if result.case.expected is None:
        assert done.returncode == 0 and output.strip().endswith(": OK"), output
        return
    assert done.returncode != 0, output
    found = re.search(r"error (\d+) at (\d+) depth lookup", output)
    assert found, output
    assert _key_from_openssl(int(found.group(1)), int(found.group(2))) == result.case.expected, output


@pytest.mark.parametrize("name", list(CASES))
def test_openssl_s_client_agrees_against_the_live_server(tmp_path, openssl, table, name):
    result = table[name]
    files = _files(tmp_path, result)
    server = gallery.serve(name)
    try:
        command = [
            openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(files["root"]),
            "-servername", HOST, "-verify_hostname", HOST, "-verify_return_error", *STRICT,
        ]
        if "crl" in files:
            command += ["-crl_check", "-CRL", str(files["crl"])]
        done = run(command, input="")
    finally:
        server.stop()
    output = done.stdout + done.stderr
    # s_client lists the chain it received: the same certificates as our client saw.
    chain_block = output.split("Certificate chain", 1)[1].split("---", 1)[0]
    assert len(re.findall(r"^\s*\d+ s:", chain_block, re.M)) == len(result.sent), output
    if result.case.expected is None:
        assert done.returncode == 0 and "Verify return code: 0 (ok)" in output, output
        return
    assert done.returncode != 0, output
    found = re.search(r"depth=(\d+) [^\n]*\nverify error:num=(\d+)", output)
    assert found, output
    assert _key_from_openssl(int(found.group(2)), int(found.group(1))) == result.case.expected, output


# --- the chain figure ---------------------------------------------------------------------------


def _gid(fig: Figure, gid: str):
    ax = fig.axes[0]
    found = [a for a in [*ax.patches, *ax.texts] if a.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def _boxes(fig: Figure) -> list[FancyBboxPatch]:
    return [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]


def _arrows(fig: Figure) -> list[FancyArrowPatch]:
    return [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def test_chain_figure_of_a_good_chain(table):
    result = table["control"]
    fig = result.plot()
    assert isinstance(fig, Figure)
    assert len(_boxes(fig)) == 3 and len(_arrows(fig)) == 2
    for i, cert in enumerate(result.chain):
        assert _gid(fig, f"chain-subject-{i}").get_text() == _cn(cert)
        body = _gid(fig, f"chain-text-{i}").get_text()
        assert "issuer: " in body and "valid: 2025-01-01 → 2045-01-01" in body and "key: ECDSA P-256" in body
    assert _gid(fig, "chain-role-0").get_text() == "leaf certificate"
    assert _gid(fig, "chain-role-1").get_text() == "intermediate CA"
    assert _gid(fig, "chain-role-2").get_text() == "root CA"
    assert "names (SAN): localhost" in _gid(fig, "chain-text-0").get_text()
    assert "issuer: itself" in _gid(fig, "chain-text-2").get_text()
    for i in range(2):
        assert _gid(fig, f"chain-link-label-{i}").get_text() == "signs"
    for patch in fig.axes[0].patches:
        assert to_hex(patch.get_edgecolor()) != RED
    assert not [t for t in fig.axes[0].texts if t.get_gid() == "chain-broken-label"]
    assert fig._suptitle.get_text() == "control: the chain holds"
    # The root is drawn left of the intermediate, left of the leaf.
    xs = [_gid(fig, f"chain-box-{i}").get_x() for i in range(3)]
    assert xs[2] < xs[1] < xs[0]


@pytest.mark.parametrize("name", DEFECTS)
def test_chain_figure_colours_the_broken_link(table, name):
    result = table[name]
    fig = result.plot()
    broken = result.broken
    assert len(_boxes(fig)) == len(result.chain)
    assert to_hex(_gid(fig, f"chain-box-{broken.index}").get_edgecolor()) == RED
    others = [i for i in range(len(result.chain)) if i != broken.index]
    for i in others:
        assert to_hex(_gid(fig, f"chain-box-{i}").get_edgecolor()) != RED
    label = _gid(fig, "chain-broken-label")
    assert label.get_text().replace("\n", " ") == f"✗ {broken.label}" and to_hex(label.get_color()) == RED
    # An issuer that broke: its "signs" arrow is red too; a leaf defect leaves the arrows alone.
    for i in range(len(result.chain) - 1):
        colour = to_hex(_gid(fig, f"chain-link-{i}").get_edgecolor())
        assert (colour == RED) == (i + 1 == broken.index), (name, i)
    assert fig._suptitle.get_text() == f"{name}: the client refused"


def test_chain_figure_draws_what_was_not_sent_dashed(table):
    fig = table["missing_intermediate"].plot()
    box = _gid(fig, "chain-box-1")
    assert box.get_linestyle() == "--"
    assert _gid(fig, "chain-box-0").get_linestyle() == "-" and _gid(fig, "chain-box-2").get_linestyle() == "-"
    assert _gid(fig, "chain-link-0").get_linestyle() == "--"  # intermediate → leaf
    assert _gid(fig, "chain-link-1").get_linestyle() == "--"  # root → intermediate


def test_chain_figure_of_a_self_signed_certificate(table):
    fig = table["self_signed"].plot()
    assert len(_boxes(fig)) == 1 and not _arrows(fig)
    assert _gid(fig, "chain-role-0").get_text() == "self-signed certificate"


def test_plots_chain_directly(table):
    chain = table["control"].chain
    fig = plots.chain(chain, broken=(1, "a broken intermediate"), title="by hand")
    assert to_hex(_gid(fig, "chain-box-1").get_edgecolor()) == RED
    assert _gid(fig, "chain-broken-label").get_text() == "✗ a broken intermediate"
    assert to_hex(_gid(fig, "chain-link-0").get_edgecolor()) == RED
    fig = plots.chain(chain, broken=0, not_sent=[1])
    assert _gid(fig, "chain-broken-label").get_text() == "✗ broken"
    assert _gid(fig, "chain-missing-label-1").get_text() == "not sent by the server"
    assert fig._suptitle is None
    with pytest.raises(ValueError):
        plots.chain([])
    with pytest.raises(ValueError):
        plots.chain(chain, broken=3)
    with pytest.raises(TypeError):
        plots.chain([b"-----BEGIN CERTIFICATE-----"])


def test_chain_figure_renders(table, tmp_path):
    for name in ("control", "missing_intermediate", "self_signed"):
        path = tmp_path / f"{name}.png"
        table[name].plot().savefig(path)
        assert path.stat().st_size > 10_000

