"""The zero-trust mesh: SPIFFE IDs and X.509-SVID rules, the policy, every way a call is refused
(with its own diagnosis), curl against a mesh service, the matrix and its heat map."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from _tools import require_tool, run
from tlslab import CertificateAuthority, diagnose_text, plots
from tlslab.mesh import (
    ANONYMOUS,
    DEFAULT_EDGES,
    INTRUDER,
    SVID_DEFECTS,
    CallLog,
    Decision,
    Mesh,
    Policy,
    SVIDError,
    issue_svid,
    parse_spiffe_id,
    spiffe_id,
    svid_id,
    svid_problems,
)
from tlslab.pki import PKIError

UTC = dt.timezone.utc
LEGIT = ("frontend", "orders", "payments")


@pytest.fixture(scope="module")
def mesh():
    with Mesh(name="test-mesh") as running:
        yield running


@pytest.fixture(autouse=True)
def _default_policy(mesh):
    """Each test starts from the default policy and an empty log."""
    for edge in mesh.policy.edges:
        mesh.policy.deny(*edge)
    for edge in DEFAULT_EDGES:
        mesh.policy.allow(*edge)
    mesh.clear_log()


# --- SPIFFE IDs ---------------------------------------------------------------------------


def test_spiffe_id_of_a_service():
    assert spiffe_id("orders") == "spiffe://course.test/orders"
    assert parse_spiffe_id("spiffe://course.test/device/sensor-1") == ("course.test", "/device/sensor-1")


@pytest.mark.parametrize(
    "value, words",
    [
        ("https://course.test/orders", "scheme must be 'spiffe'"),
        ("spiffe://Course.Test/orders", "trust domain"),
        ("spiffe://course.test:8443/orders", "no port"),
        ("spiffe://course.test", "names a trust domain, not a workload"),
        ("spiffe://course.test/", "names a trust domain, not a workload"),
        ("spiffe://course.test/orders/", "empty segment"),
        ("spiffe://course.test/a//b", "empty segment"),
        ("spiffe://course.test/../payments", "'.' and '..'"),
        ("spiffe://course.test/orders?admin=1", "no query or fragment"),
        ("spiffe://course.test/ord ers", "path segment"),
        ("spiffe:///orders", "trust domain is empty"),
    ],
)
def test_bad_spiffe_ids_are_refused_with_the_rule_they_break(value, words):
    with pytest.raises(SVIDError, match=words.replace("(", r"\(").replace("?", r"\?")):
        parse_spiffe_id(value)


# --- X.509-SVID rules ---------------------------------------------------------------------


def test_a_mesh_certificate_is_a_valid_svid(mesh):
    cred = mesh.credential("orders")
    assert svid_problems(cred) == []
    assert svid_id(cred) == "spiffe://course.test/orders"
    der = cred.certificate.public_bytes(serialization.Encoding.DER)
    assert svid_id(cred.certificate) == svid_id(cred.cert_pem) == svid_id(der) == svid_id(cred.cert_pem.decode())


def test_two_uri_sans_are_refused(mesh):
    twin = issue_svid(mesh.ca, "frontend", defect="two-uri-sans")
    assert len(twin.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.UniformResourceIdentifier)) == 2
    with pytest.raises(SVIDError, match="2 URI SANs .*exactly one"):
        svid_id(twin)


def test_ca_true_is_refused(mesh):
    ca_leaf = issue_svid(mesh.ca, "frontend", defect="ca")
    with pytest.raises(SVIDError, match=r"CA=true"):
        svid_id(ca_leaf)


def test_no_digital_signature_and_no_uri_are_refused(mesh):
    with pytest.raises(SVIDError, match="lacks digitalSignature"):
        svid_id(issue_svid(mesh.ca, "frontend", defect="no-digital-signature"))
    with pytest.raises(SVIDError, match="no URI SAN"):
        svid_id(issue_svid(mesh.ca, "frontend", defect="no-uri-san"))
    with pytest.raises(SVIDError, match="no URI SAN"):
        svid_id(mesh.ca.issue_server_cert("localhost"))


def test_svid_id_rejects_garbage_and_unknown_defects(mesh):
    with pytest.raises(SVIDError, match="not a certificate"):
        svid_id(b"garbage")
    with pytest.raises(TypeError):
        svid_id(42)  # type: ignore[arg-type]
    with pytest.raises(PKIError, match="unknown SVID defect"):
        issue_svid(mesh.ca, "frontend", defect="shiny")


# --- the policy ---------------------------------------------------------------------------


def test_policy_edges_and_prints():
    policy = Policy([("frontend", "orders")])
    assert policy.allows("frontend", "orders") and not policy.allows("orders", "frontend")
    assert policy.allow("orders", "payments") is policy
    assert repr(policy) == "Policy(allow frontend → orders, orders → payments; deny everything else)"
    assert str(policy) == "allow  frontend → orders\nallow  orders → payments\ndeny   everything else"
    assert policy.toggle("frontend", "orders") is False
    assert policy.edges == [("orders", "payments")]
    assert ("orders", "payments") in policy and len(policy) == 1
    assert policy == Policy([("orders", "payments")]) and policy.copy() == policy
    assert "<table" in policy._repr_html_()
    assert repr(Policy()) == "Policy(allow nothing; deny everything else)"


def test_policy_speaks_spiffe_ids():
    policy = Policy.default()
    assert policy.allows("spiffe://course.test/frontend", "spiffe://course.test/orders")
    assert policy.decide("spiffe://course.test/frontend", "orders") == Decision(
        True, "the policy allows frontend → orders", "policy", "spiffe://course.test/frontend")
    denied = policy.decide("spiffe://other.test/frontend", "orders")
    assert not denied.allowed and "trust domain 'other.test'" in denied.reason
    assert policy.decide("not-an-id", "orders").stage == "svid"
    with pytest.raises(SVIDError, match="trust domain"):
        policy.allow("spiffe://other.test/x", "orders")


# --- calls: allowed, and every way to be refused ---------------------------------------------


def test_an_allowed_call(mesh):
    call = mesh.call("frontend", "orders")
    assert call.allowed and call.status == 200 and call.stage == "allowed"
    assert call.caller_id == "spiffe://course.test/frontend"
    assert call.callee_id == "spiffe://course.test/orders"
    assert call.refused_by is None
    assert repr(call) == "<CallResult frontend → orders: allowed (HTTP 200)>"
    assert "orders served spiffe://course.test/frontend" in call.reply


def test_a_valid_identity_that_the_policy_does_not_allow(mesh):
    call = mesh.call("frontend", "payments")
    assert not call.allowed and call.stage == "policy" and call.status == 403
    assert call.reason == "the policy has no edge frontend → payments"
    assert call.refused_by == "payments" and call.diagnosis is None
    assert call.report.ok  # the handshake succeeded: authentication passed, authorization did not
    assert repr(call) == ("<CallResult frontend → payments: denied by policy (HTTP 403): "
                          "the policy has no edge frontend → payments>")


def test_the_intruder_is_refused_by_tls(mesh):
    call = mesh.call(INTRUDER, "orders")
    # Its certificate claims to be the frontend; the Rogue CA signed it.
    assert call.caller_id == "spiffe://course.test/frontend"
    assert call.stage == "tls" and call.status is None and call.reply == ""
    assert (call.diagnosis.key, call.diagnosis.who) == ("unknown_ca", "server")
    assert call.refused_by == "orders"
    assert call.report.server_view.failure.key == "unknown_issuer"
    assert repr(call) == "<CallResult intruder → orders: refused by TLS: unknown_ca (orders, the server, refused)>"


def test_callers_refuse_to_talk_to_the_intruder(mesh):
    call = mesh.call("frontend", INTRUDER)
    # OpenSSL completes the intruder's chain from its trust store and sends the Rogue root along.
    assert (call.diagnosis.key, call.diagnosis.who) == ("self_signed_in_chain", "client")
    assert call.refused_by == "frontend"


def test_no_certificate_is_certificate_required(mesh):
    call = mesh.call(None, "orders")
    assert call.caller == ANONYMOUS and call.caller_id is None
    assert (call.diagnosis.key, call.diagnosis.who) == ("certificate_required", "server")
    assert call.report.server_view.failure.key == "certificate_required"


def test_a_wrong_ca_certificate_is_unknown_ca(mesh):
    stranger = CertificateAuthority("Stranger CA").issue_client_cert("spiffe://course.test/orders")
    call = mesh.call(stranger, "payments")
    assert (call.diagnosis.key, call.diagnosis.who) == ("unknown_ca", "server")
    assert call.diagnosis.code == "alert unknown_ca (48) received"


def test_an_expired_certificate_is_expired_and_the_server_refuses(mesh):
    expired = issue_svid(mesh.ca, "orders", usage="client",
                         not_before=dt.datetime(2024, 1, 1, tzinfo=UTC), not_after=dt.datetime(2025, 1, 1, tzinfo=UTC))
    call = mesh.call(expired, "payments")
    assert (call.diagnosis.key, call.diagnosis.who) == ("expired", "server")
    assert call.diagnosis.code == "alert certificate_expired (45) received"
    assert call.report.server_view.failure.key == "expired"


def test_a_certificate_without_client_auth_is_unsupported_certificate(mesh):
    server_only = issue_svid(mesh.ca, "orders", usage="server")
    call = mesh.call(server_only, "payments")
    assert (call.diagnosis.key, call.diagnosis.who) == ("unsupported_certificate", "server")
    assert call.diagnosis.code == "alert unsupported_certificate (43) received"
    assert call.report.server_view.failure.key == "wrong_usage"  # verify error 26: unsuitable purpose


def test_the_failure_modes_have_distinct_diagnoses(mesh):
    keys = {
        mesh.call(None, "orders").diagnosis.key,
        mesh.call(CertificateAuthority("Elsewhere").issue_client_cert(spiffe_id("x")), "orders").diagnosis.key,
        mesh.call(issue_svid(mesh.ca, "frontend", usage="client", not_after=dt.datetime(2025, 1, 1, tzinfo=UTC)),
                  "orders").diagnosis.key,
        mesh.call(issue_svid(mesh.ca, "frontend", usage="server"), "orders").diagnosis.key,
    }
    assert keys == {"certificate_required", "unknown_ca", "expired", "unsupported_certificate"}


@pytest.mark.parametrize("defect, words", [
    ("two-uri-sans", "2 URI SANs"),
    ("no-uri-san", "no URI SAN"),
    ("ca", "CA=true"),
    ("no-digital-signature", "lacks digitalSignature"),
])
def test_the_callee_enforces_the_svid_rules(mesh, defect, words):
    assert defect in SVID_DEFECTS
    call = mesh.call(issue_svid(mesh.ca, "frontend", usage="client", defect=defect), "orders")
    # OpenSSL accepts every one of these in the handshake: the SVID rules are the mesh's own check.
    assert call.report.ok
    assert (call.stage, call.status, call.allowed) == ("svid", 403, False)
    assert call.reason.startswith("not a valid X.509-SVID") and words in call.reason
    assert call.outcome == "denied: invalid SVID"


def test_another_trust_domain_is_denied_by_policy(mesh):
    foreign = mesh.ca.issue_client_cert("spiffe://other.test/frontend")
    call = mesh.call(foreign, "orders")
    assert call.stage == "policy" and "trust domain 'other.test'" in call.reason


def test_every_call_is_logged(mesh):
    mesh.call("frontend", "orders")
    mesh.call("frontend", "payments")
    mesh.call(INTRUDER, "payments")
    assert isinstance(mesh.log, CallLog) and len(mesh.log) == 3
    assert mesh.log.rows() == [
        ("1", "frontend", "orders", "allowed", "the policy allows frontend → orders"),
        ("2", "frontend", "payments", "denied", "HTTP 403: the policy has no edge frontend → payments"),
        ("3", "intruder", "payments", "denied", "TLS: unknown_ca — payments (server) refused"),
    ]
    assert repr(mesh.log).splitlines()[0].split() == ["#", "caller", "callee", "verdict", "why"]
    assert mesh.log._repr_html_().count("<tr>") == 4


# --- the matrix ---------------------------------------------------------------------------


def _expected(caller: str, callee: str, allowed: set[tuple[str, str]]) -> str:
    if caller == callee:
        return "self"
    if caller == INTRUDER or callee == INTRUDER:
        return "tls"
    return "allowed" if (caller, callee) in allowed else "policy"


@pytest.mark.parametrize("edges", [
    DEFAULT_EDGES,
    (),
    (("payments", "frontend"), ("orders", "frontend"), ("frontend", "payments")),
    tuple((a, b) for a in LEGIT for b in LEGIT if a != b) + (("intruder", "orders"),),
])
def test_the_matrix_is_exactly_the_policy(mesh, edges):
    for edge in mesh.policy.edges:
        mesh.policy.deny(*edge)
    for edge in edges:
        mesh.policy.allow(*edge)
    matrix = mesh.matrix()
    assert matrix.callers == matrix.callees == (*LEGIT, INTRUDER)
    for caller in matrix.callers:
        for callee in matrix.callees:
            assert matrix.outcome(caller, callee) == _expected(caller, callee, set(edges)), (caller, callee)
    # Even an edge that allows the intruder changes nothing: authentication comes first.
    assert matrix.allowed == {e for e in edges if INTRUDER not in e}
    assert len(mesh.log) == 12


def test_the_matrix_prints_the_same_every_time(mesh):
    matrix = mesh.matrix()
    assert repr(matrix) == "\n".join([
        "caller \\ callee  frontend         orders           payments         intruder",
        "frontend         —                allowed          403 policy       TLS: self_signed_in_chain",
        "orders           403 policy       —                allowed          TLS: self_signed_in_chain",
        "payments         403 policy       403 policy       —                TLS: self_signed_in_chain",
        "intruder         TLS: unknown_ca  TLS: unknown_ca  TLS: unknown_ca  —",
    ])
    assert repr(mesh.matrix()) == repr(matrix)
    page = matrix._repr_html_()
    assert page.count("<td") == 16 and "403 policy" in page


def test_the_heat_map(mesh):
    fig = plots.mesh_matrix(mesh.matrix(), title="default policy")
    texts = {t.get_gid(): t.get_text() for t in fig.axes[0].texts}
    assert texts["mesh-cell-frontend-orders"] == "allowed"
    assert texts["mesh-cell-frontend-payments"] == "403 policy"
    assert texts["mesh-cell-intruder-orders"] == "TLS\nunknown_ca"
    assert texts["mesh-cell-orders-orders"] == "—"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "allowed (HTTP 200)", "denied by policy (HTTP 403)", "refused by TLS (no request sent)"]


# --- your own authorizer (the lab's exercise) ------------------------------------------------


def test_a_custom_authorizer_decides():
    def only_frontend(certificate: x509.Certificate, callee: str) -> bool:
        return svid_id(certificate) == "spiffe://course.test/frontend"

    with Mesh(name="test-mesh-custom", authorize=only_frontend, intruder=False) as custom:
        matrix = custom.matrix()
        assert matrix.allowed == {("frontend", "orders"), ("frontend", "payments")}
        assert matrix.cell("orders", "payments").reason == "your authorize() denied it"
        broken = custom.call(issue_svid(custom.ca, "frontend", usage="client", defect="two-uri-sans"), "orders")
        assert broken.stage == "svid" and "2 URI SANs" in broken.reason


def test_a_crashing_authorizer_is_a_500_not_a_dead_service():
    def crash(certificate, callee):
        raise RuntimeError("oops")

    with Mesh(name="test-mesh-crash", authorize=crash, intruder=False, services=("a", "b")) as custom:
        call = custom.call("a", "b")
        assert (call.stage, call.status) == ("error", 500) and "RuntimeError: oops" in call.reason
        assert custom.service("b").server.running


# --- curl against a mesh service -------------------------------------------------------------


def _curl(args: list[str]) -> list[str]:
    return [require_tool("curl"), "--silent", "--show-error", "--write-out", "\n%{http_code}", *args[1:]]


def test_curl_with_an_allowed_certificate(mesh):
    done = run(_curl(mesh.curl_command("frontend", "orders")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "200"
    assert "orders served spiffe://course.test/frontend" in done.stdout


def test_curl_with_a_certificate_the_policy_denies(mesh):
    done = run(_curl(mesh.curl_command("payments", "orders")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "403"
    assert "the policy has no edge payments → orders" in done.stdout


def test_curl_without_a_certificate(mesh):
    done = run(_curl(mesh.curl_command(None, "orders")))
    assert done.returncode != 0
    assert "alert certificate required" in done.stderr
    assert diagnose_text(done.stderr).key == "certificate_required"
    assert mesh.service("orders").server.wait_for_connections(1)[-1].failure.key == "certificate_required"


def test_curl_as_the_intruder(mesh):
    done = run(_curl(mesh.curl_command(INTRUDER, "orders")))
    assert done.returncode != 0 and "alert unknown ca" in done.stderr
    assert diagnose_text(done.stderr).key == "unknown_ca"


# --- lifecycle and reprs --------------------------------------------------------------------


def test_repr_is_stable(mesh):
    assert repr(mesh) == "<Mesh 'test-mesh': frontend, orders, payments + intruder; 2 allowed edge(s); running>"
    assert repr(mesh.service("orders")) == "<Service 'orders' spiffe://course.test/orders issued by course.test Mesh CA>"
    assert "spiffe://course.test/payments" in mesh._repr_html_()


def test_the_mesh_stops_every_service():
    with Mesh(name="test-mesh-stop", services=("a", "b")) as small:
        servers = [s.server for s in small.services.values()]
        assert all(s.running for s in servers) and small.call("a", "b").stage == "policy"
    assert not any(s.running for s in servers)
    assert "stopped" in repr(small)


def test_bad_meshes_are_refused():
    with pytest.raises(ValueError, match="different"):
        Mesh(services=("a", "a"))
    with pytest.raises(ValueError, match="intruder"):
        Mesh(services=("a", "intruder"))
    with pytest.raises(SVIDError):
        Mesh(services=("bad name",))
    with pytest.raises(KeyError, match="no service 'ghost'"):
        Mesh(services=("a",), intruder=False).service("ghost")


def test_mesh_explorer_toggles_and_sends(mesh):
    from tlslab.widgets import mesh_explorer

    box = mesh_explorer(mesh)
    checkbox = next(c for row in box.children[1:5] for c in row.children if c.description == "frontend → payments")
    assert checkbox.value is False
    checkbox.value = True
    assert mesh.policy.allows("frontend", "payments")
    send = next(c for c in box.children if getattr(c, "description", "") == "send traffic")
    send.click()
    assert "allowed" in box.children[-1].value and bytes(box.children[-2].value).startswith(b"\x89PNG")
    assert mesh.log[-12:] and mesh.matrix().outcome("frontend", "payments") == "allowed"
