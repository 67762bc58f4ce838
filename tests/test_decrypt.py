"""tlslab.keylog and tlslab.decrypt: known-answer vectors, real sessions of every suite, wrong keys, fuzzing."""

from __future__ import annotations

import hmac

import pytest
from _capture import EDITS, FUZZ_EXAMPLES, SCENARIOS, mutate, record_session
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlslab.decrypt import (
    SUITES,
    DecryptError,
    decrypt_premaster,
    decrypt_session,
    decrypt_tls13_record,
    finished_verify_data,
    hkdf_expand_label,
    prf,
    record_nonce,
    traffic_keys,
    transcript_hash,
)
from tlslab.keylog import KeyLog, KeyLogError, parse_keylog, read_keylog
from tlslab.pki import CertificateAuthority
from tlslab.records import ClientHello, RecordError, parse_handshake, parse_messages

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


# --- known answers --------------------------------------------------------------------------------


def test_hkdf_expand_label_matches_rfc_8448():
    # RFC 8448, "Simple 1-RTT Handshake": the server handshake traffic secret → write key and IV.
    secret = bytes.fromhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
    assert hkdf_expand_label(secret, "key", b"", 16).hex() == "3fce516009c21727d0f2e4e86ee403bc"
    assert hkdf_expand_label(secret, "iv", b"", 12).hex() == "5d313eb2671276ee13000b30"
    keys = traffic_keys(secret, 0x1301)
    assert (keys.key.hex(), keys.iv.hex()) == ("3fce516009c21727d0f2e4e86ee403bc", "5d313eb2671276ee13000b30")


@pytest.mark.parametrize("hash_name, algorithm", [("sha256", hashes.SHA256()), ("sha384", hashes.SHA384())])
def test_hkdf_expand_label_agrees_with_cryptography(hash_name, algorithm):
    secret, context = bytes(range(48)), b"\x01" * 32
    info = (80).to_bytes(2, "big") + bytes([len(b"tls13 derived")]) + b"tls13 derived" + bytes([32]) + context
    expected = HKDFExpand(algorithm, 80, info).derive(secret)
    assert hkdf_expand_label(secret, "derived", context, 80, hash_name) == expected


def test_tls12_prf_known_answer():
    # The widely used P_SHA256 test vector (secret, "test label", seed → 100 bytes).
    out = prf(bytes.fromhex("9bbe436ba940f017b17652849a71db35"), "test label", bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c"), 100)
    assert out[:16].hex() == "e3f229ba727be17b8d122620557cd453"
    assert out[-16:].hex() == "0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66"[-32:]


def test_record_nonce_is_the_iv_xor_the_sequence_number():
    iv = bytes.fromhex("5d313eb2671276ee13000b30")
    assert record_nonce(iv, 0) == iv
    assert record_nonce(iv, 1).hex() == "5d313eb2671276ee13000b31"
    assert record_nonce(iv, 0x0102).hex() == "5d313eb2671276ee13000a32"


# --- key logs -------------------------------------------------------------------------------------

RANDOM = "ab" * 32


def test_keylog_groups_secrets_by_client_random():
    text = f"""# a comment

CLIENT_HANDSHAKE_TRAFFIC_SECRET {RANDOM} {'11' * 32}
SERVER_HANDSHAKE_TRAFFIC_SECRET {RANDOM} {'22' * 32}
CLIENT_TRAFFIC_SECRET_0 {RANDOM} {'33' * 48}
SERVER_TRAFFIC_SECRET_0 {RANDOM} {'44' * 48}
EXPORTER_SECRET {RANDOM} {'55' * 32}
CLIENT_RANDOM {'cd' * 32} {'66' * 48}
"""
    log = parse_keylog(text)
    assert len(log) == 2 and not log.notes
    tls13 = log[bytes.fromhex(RANDOM)]
    assert tls13.is_tls13 and tls13.server_handshake_traffic_secret == b"\x22" * 32
    assert tls13.present() == [
        "client_handshake_traffic_secret", "server_handshake_traffic_secret",
        "client_traffic_secret_0", "server_traffic_secret_0", "exporter_secret",
    ]
    assert log[bytes.fromhex("cd" * 32)].master_secret == b"\x66" * 48
    assert bytes.fromhex("cd" * 32) in log and b"x" not in log
    assert repr(log) == "<KeyLog 2 connections>"


def test_bad_keylog_lines_are_skipped_with_a_note_or_refused_when_strict():
    text = f"CLIENT_RANDOM nothex {'66' * 48}\nWHAT {RANDOM} 00\nCLIENT_RANDOM {RANDOM} {'66' * 10}\nonly two\nCLIENT_RANDOM {RANDOM} {'66' * 48}\n"
    log = parse_keylog(text)
    assert len(log) == 1 and len(log.notes) == 4
    assert "line 1" in log.notes[0] and "unknown label WHAT" in log.notes[1] and "48 bytes" in log.notes[2]
    with pytest.raises(KeyLogError, match="line 1"):
        parse_keylog(text, strict=True)


def test_missing_secrets_say_what_is_missing(tmp_path):
    log = parse_keylog(f"CLIENT_RANDOM {RANDOM} {'66' * 48}\n")
    with pytest.raises(KeyLogError, match="no secrets for client random"):
        log[b"\x00" * 32]
    with pytest.raises(KeyLogError, match="no SERVER_HANDSHAKE_TRAFFIC_SECRET line"):
        log[bytes.fromhex(RANDOM)].require("server_handshake_traffic_secret")
    with pytest.raises(KeyLogError, match="no key log at"):
        read_keylog(tmp_path / "missing.txt")


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_keylog_text(text):
    log = parse_keylog(text)  # lenient: never raises
    assert isinstance(log, KeyLog)
    try:
        parse_keylog(text, strict=True)
    except KeyLogError:
        pass


# --- real sessions of every suite ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_decrypts_every_suite_and_finds_the_echo(name):
    session = record_session(name)
    result = decrypt_session(session.client_bytes, session.server_bytes, keylog=session.keylog)
    assert result.version == session.version and result.cipher_suite == session.suite
    assert result.client_data == session.sent
    assert result.server_data == session.sent  # the echo server sent it back
    assert result.server_finished_ok is True and result.client_finished_ok is True
    assert result.method == "key log" and result.problem is None
    names = [m.name for m in result.messages]
    assert names.count("Finished") == 2
    if name in ("tls13-aes256", "tls13-aes128", "tls13-chacha", "tls13-hrr"):
        assert names[-7:-2] == ["EncryptedExtensions", "Certificate", "CertificateVerify", "Finished", "Finished"]
    if name == "tls13-mtls":  # the client's certificate travels encrypted, after the server's Finished
        client = [m.name for m in result.messages if m.direction == "client" and m.name != "ClientHello"]
        assert client == ["Certificate", "CertificateVerify", "Finished"]
        assert "CertificateRequest" in names
    if "resumed" in name:
        assert "Certificate" not in names
    assert result.records[0].direction == "client" and isinstance(result.records[0].messages[0], ClientHello)


@pytest.mark.parametrize("name", ["tls12-rsa", "tls12-rsa-aes256"])
def test_static_rsa_decrypts_with_the_server_key_alone(name, tmp_path):
    session = record_session(name)
    result = decrypt_session(session.client_bytes, session.server_bytes, server_key=session.server_key)
    assert result.method == "server RSA key" and result.server_finished_ok and result.client_finished_ok
    assert result.client_data == session.sent and result.server_data == session.sent
    # The key as a PEM file works too (a "stolen" key file).
    pem = tmp_path / "stolen.key"
    pem.write_bytes(session.server_key.key_pem())
    again = decrypt_session(session.client_bytes, session.server_bytes, server_key=str(pem))
    assert again.server_data == session.sent


def test_the_lesson_path_step_by_step():
    """What the notebook does by hand: key log line → key and IV → the first encrypted record."""
    session = record_session("tls13-aes128")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    secrets = parse_keylog(session.keylog)[hs.client_hello.random]
    suite = SUITES[hs.server_hello.cipher_suite]
    keys = traffic_keys(secrets.server_handshake_traffic_secret, suite)
    first = hs.server.encrypted[0]
    content_type, plaintext = decrypt_tls13_record(keys, 0, first)
    assert content_type == 22
    (ee,) = parse_messages(plaintext, tls13=True)
    assert ee.name == "EncryptedExtensions"
    # The server Finished, checked by hand: HMAC over the transcript hash.
    result = decrypt_session(session.client_bytes, session.server_bytes, keylog=session.keylog)
    messages = result.messages
    fin = next(m for m in messages if m.name == "Finished" and m.direction == "server")
    before = messages[: messages.index(fin)]
    expected = finished_verify_data(secrets.server_handshake_traffic_secret, transcript_hash(before, suite.hash), suite.hash)
    assert hmac.compare_digest(expected, fin.verify_data)


def test_timed_chunks_order_the_decrypted_records():
    session = record_session("tls13-chacha")
    result = decrypt_session(session.timed("client"), session.timed("server"), keylog=session.keylog)
    times = [r.record.time for r in result.records]
    assert times == sorted(times)
    text = repr(result)
    assert text.startswith("<DecryptedSession TLS 1.3 TLS_CHACHA20_POLY1305_SHA256 via key log; server Finished verified")
    assert "application data b'GET /secret" in text
    assert "<table>" in result._repr_html_()


# --- wrong keys, tampering, forward secrecy ------------------------------------------------------


def test_another_connections_keylog_is_refused():
    session, other = record_session("tls13-aes256"), record_session("tls13-aes128")
    with pytest.raises(DecryptError, match="no secrets for client random"):
        decrypt_session(session.client_bytes, session.server_bytes, keylog=other.keylog)


def test_wrong_secret_raises_decrypt_error_not_invalid_tag():
    session = record_session("tls13-aes256")
    lines = []
    for line in session.keylog.splitlines():
        if line.startswith("SERVER_HANDSHAKE_TRAFFIC_SECRET"):
            label, random, secret = line.split()
            line = f"{label} {random} {'00' * (len(secret) // 2)}"
        lines.append(line)
    with pytest.raises(DecryptError, match="server record 0 does not decrypt with the server handshake key"):
        decrypt_session(session.client_bytes, session.server_bytes, keylog="\n".join(lines))


@pytest.mark.parametrize("name", ["tls13-aes256", "tls12-ecdhe-chacha"])
def test_a_flipped_bit_is_detected(name):
    session = record_session(name)
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    target = hs.server.encrypted[-2]  # the echoed application data
    server = bytearray(session.server_bytes)
    server[target.offset + 5 + 10] ^= 0x01
    with pytest.raises(DecryptError, match="does not decrypt"):
        decrypt_session(session.client_bytes, bytes(server), keylog=session.keylog)
    partial = decrypt_session(session.client_bytes, bytes(server), keylog=session.keylog, lenient=True)
    assert "does not decrypt" in partial.problem
    assert partial.client_data == session.sent and partial.server_data == b""
    assert any(r.error for r in partial.records) and "stopped:" in repr(partial)


def test_wrong_server_key_is_refused():
    session = record_session("tls12-rsa")
    other = CertificateAuthority("Other").issue_server_cert("localhost", key_type="rsa")
    with pytest.raises(DecryptError):
        decrypt_session(session.client_bytes, session.server_bytes, server_key=other)
    ec = CertificateAuthority("EC").issue_server_cert("localhost")
    with pytest.raises(DecryptError, match="not RSA"):
        decrypt_premaster(b"\x00" * 256, ec)


@pytest.mark.parametrize("name", ["tls12-ecdhe-gcm", "tls12-ecdhe-aes256"])
def test_ecdhe_resists_a_stolen_server_key(name):
    session = record_session(name)
    with pytest.raises(DecryptError, match="forward secrecy"):
        decrypt_session(session.client_bytes, session.server_bytes, server_key=session.server_key)


def test_tls13_resists_a_stolen_server_key():
    session = record_session("tls13-aes256")
    with pytest.raises(DecryptError, match="forward secrecy"):
        decrypt_session(session.client_bytes, session.server_bytes, server_key=session.server_key)


def test_tls12_without_any_secret():
    session = record_session("tls12-rsa")
    with pytest.raises(DecryptError, match="needs the key log or the server's RSA private key"):
        decrypt_session(session.client_bytes, session.server_bytes)


# --- fuzzing: only DecryptError and RecordError escape ------------------------------------------------


@FUZZ
@given(st.sampled_from(sorted(SCENARIOS)), st.booleans(), EDITS, st.booleans())
def test_fuzz_decrypt_mutated_sessions(name, client_side, edits, lenient):
    session = record_session(name)
    client, server = session.client_bytes, session.server_bytes
    if client_side:
        client = mutate(client, edits)
    else:
        server = mutate(server, edits)
    key = session.server_key if "rsa" in name else None
    try:
        result = decrypt_session(client, server, keylog=session.keylog, server_key=key, lenient=lenient)
    except (DecryptError, RecordError):
        return
    repr(result), result._repr_html_(), result.rows(), result.client_data


@FUZZ
@given(st.sampled_from(sorted(SCENARIOS)), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64))
def test_fuzz_decrypt_garbage_inside_encrypted_records(name, where, garbage):
    """Random ciphertext in a well-formed record: the AEAD must refuse it, as a DecryptError."""
    session = record_session(name)
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    target = hs.server.encrypted[where % len(hs.server.encrypted)]
    fragment = garbage
    record = bytes([target.content_type]) + target.version.to_bytes(2, "big") + len(fragment).to_bytes(2, "big") + fragment
    server = session.server_bytes[: target.offset] + record + session.server_bytes[target.end :]
    try:
        decrypt_session(session.client_bytes, server, keylog=session.keylog)
    except (DecryptError, RecordError):
        pass


def test_captures_in_the_taps_shape_are_accepted():
    """tlslab.wire's Capture: chunks with direction ("client→server"), data, time, connection."""
    from dataclasses import dataclass

    from tlslab.decrypt import decrypt_capture
    from tlslab.records import capture_chunks, parse_capture

    @dataclass
    class Chunk:
        direction: str
        data: bytes
        time: float
        connection: int = 0

    class Capture:
        def __init__(self, chunks):
            self.chunks = chunks

    session = record_session("tls13-aes128")
    arrows = {"client": "client→server", "server": "server→client"}
    capture = Capture([Chunk(arrows[d], c, t) for d, t, c in session.chunks])
    assert capture_chunks(capture) == session.chunks
    assert parse_capture(capture).cipher_suite == "TLS_AES_128_GCM_SHA256"
    assert decrypt_capture(capture, keylog=session.keylog).server_data == session.sent
    two = Capture(capture.chunks + [Chunk("client->server", b"x", 9.0, connection=1)])
    with pytest.raises(ValueError, match="2 connections"):
        capture_chunks(two)
