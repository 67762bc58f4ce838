"""tlslab.records on real captured handshakes, on hand-made edge cases, and under fuzzing."""

from __future__ import annotations

import hashlib

import pytest
from _capture import EDITS, FUZZ_EXAMPLES, SCENARIOS, mutate, record_session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlslab.records import (
    Alert,
    Certificate,
    ClientHello,
    ClientKeyExchange,
    HelloRetryRequest,
    RecordError,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
    cipher_suite_name,
    extension_name,
    group_name,
    is_grease,
    openssl_cipher_name,
    parse_handshake,
    parse_messages,
    parse_records,
    signature_scheme_name,
)

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload


# --- real handshakes ----------------------------------------------------------------------------


def test_client_hello_of_a_python_client():
    session = record_session("tls13-aes256")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    hello = hs.client_hello
    assert isinstance(hello, ClientHello) and hello.direction == "client"
    assert hello.server_name == "localhost"
    assert hello.cipher_suite_names[:3] == ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"]
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" in hello.cipher_suite_names
    for name in ("server_name", "supported_groups", "signature_algorithms", "supported_versions", "key_share", "psk_key_exchange_modes"):
        assert name in hello.extension_names
    assert hello.supported_versions[0] == "TLS 1.3"
    assert hello.key_shares[0].group_name == "x25519" and len(hello.key_shares[0].key_exchange) == 32
    assert "x25519" in hello.extension("supported_groups").value
    assert "rsa_pss_rsae_sha256" in hello.extension("signature_algorithms").value
    assert hello.extension("psk_key_exchange_modes").value == ["psk_dhe_ke"]
    assert hello.extension("extended_master_secret").value is True
    assert len(hello.random) == 32 and hello.offset == 5  # right after the record header
    assert hello.raw == session.client_bytes[5 : 5 + hello.length]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_server_hello_names_the_negotiated_suite(name):
    session = record_session(name)
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    assert hs.version == session.version
    assert hs.cipher_suite == session.suite
    assert isinstance(hs.server_hello, ServerHello)
    assert hs.client_hello.server_name == "localhost"
    assert hs.problem is None
    if session.version == "TLS 1.3":
        # After the ServerHello everything is encrypted: only records, no readable messages.
        names = [m.name for m in hs.server.messages]
        assert names in (["ServerHello"], ["HelloRetryRequest", "ServerHello"])
        assert hs.server.encrypted and all(r.content_type == 23 for r in hs.server.encrypted)
    elif "resumed" in name:  # an abbreviated handshake: no certificate, no key exchange
        assert "Certificate" not in [m.name for m in hs.server.messages]
    else:
        assert [m.name for m in hs.server.messages][:2] == ["ServerHello", "Certificate"]


def test_openssl_s_client_hello_offers_only_the_requested_tls13_suite():
    session = record_session("tls13-chacha")
    hello = parse_handshake(session.client_bytes, session.server_bytes).client_hello
    assert hello.cipher_suite_names == ["TLS_CHACHA20_POLY1305_SHA256", "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"]


def test_tls12_messages_are_decoded():
    session = record_session("tls12-ecdhe-gcm")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    server = hs.server.messages
    assert [m.name for m in server] == ["ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone", "NewSessionTicket"]
    cert = server[1]
    assert isinstance(cert, Certificate) and cert.request_context is None
    assert "CN=localhost" in cert.certificates[0].subject
    ske = server[2]
    assert isinstance(ske, ServerKeyExchange) and group_name(ske.group) == "x25519" and len(ske.public_key) == 32
    assert signature_scheme_name(ske.signature_scheme) == "ecdsa_secp256r1_sha256"
    assert isinstance(server[3], ServerHelloDone)
    cke = next(m for m in hs.client.messages if isinstance(m, ClientKeyExchange))
    assert cke.key_exchange == "ECDHE" and len(cke.public_key) == 32
    # The client's Finished comes after its ChangeCipherSpec: encrypted, kept as a record.
    described = [r.describe() for r in hs.client]
    assert described[described.index("ChangeCipherSpec") + 1] == "encrypted handshake"


def test_static_rsa_client_key_exchange_carries_the_encrypted_premaster():
    session = record_session("tls12-rsa")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    cke = next(m for m in hs.client.messages if isinstance(m, ClientKeyExchange))
    assert cke.key_exchange == "RSA" and len(cke.encrypted_premaster) == 256  # an RSA-2048 ciphertext
    assert "ServerKeyExchange" not in [m.name for m in hs.server.messages]


def test_resumption_offers_a_pre_shared_key():
    session = record_session("tls13-resumed")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    offered = hs.client_hello.extension("pre_shared_key").value
    assert len(offered["identities"]) == 1 and offered["binders"] == 1
    assert hs.client_hello.extension_names[-1] == "pre_shared_key"  # it must come last (RFC 8446)
    assert hs.server_hello.extension("pre_shared_key").value == {"selected_identity": 0}


def test_hello_retry_request_is_recognised_by_its_random():
    session = record_session("tls13-hrr")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    hrr = hs.hello_retry_request
    assert isinstance(hrr, HelloRetryRequest) and hrr.is_hello_retry_request
    assert hrr.random == hashlib.sha256(b"HelloRetryRequest").digest()
    assert hrr.key_share == "secp256r1"
    hellos = [m for m in hs.client.messages if isinstance(m, ClientHello)]
    assert len(hellos) == 2 and hellos[1].key_shares[0].group_name == "secp256r1"
    assert hs.server_hello.key_share.group_name == "secp256r1"
    assert [type(m).__name__ for m in hs.messages][:4] == ["ClientHello", "HelloRetryRequest", "ClientHello", "ServerHello"]


def test_timed_chunks_give_the_real_order():
    session = record_session("tls13-chacha")
    hs = parse_handshake(session.timed("client"), session.timed("server"))
    times = [r.time for r in hs.records]
    assert times == sorted(times)
    assert hs.records[0].direction == "client" and hs.records[1].direction == "server"


@pytest.mark.parametrize("name", ["tls13-aes256", "tls12-rsa", "tls13-hrr", "tls13-resumed"])
def test_spans_cover_every_byte_exactly_once(name):
    session = record_session(name)
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    for records in (hs.client, hs.server):
        position = 0
        for span in records.spans():
            assert span.start == position, (span, position)
            assert span.end > span.start
            position = span.end
        assert position == len(records.data)


def test_spans_point_at_the_fields_they_name():
    session = record_session("tls13-aes256")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    data = hs.client.data
    spans = hs.client.spans()
    host = next(s for s in spans if s.label == "host name")
    assert data[host.start : host.end] == b"localhost" and host.note == "localhost"
    random = next(s for s in spans if s.label == "random")
    assert data[random.start : random.end] == hs.client_hello.random
    suites = [s for s in spans if s.label == "cipher suite"]
    assert [s.note for s in suites] == hs.client_hello.cipher_suite_names
    assert [s.note for s in spans if s.label == "extension type"] == hs.client_hello.extension_names
    assert spans[0].label == "record type" and spans[0].note == "handshake (22)"


def test_hex_view_text_and_html():
    session = record_session("tls13-aes256")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    text = str(hs.client.hex_view())
    assert "host name: localhost" in text and "cipher suite: TLS_AES_256_GCM_SHA384" in text
    page = hs.client._repr_html_()
    assert "title='host name: localhost" in page and "<code" in page
    assert "ServerHello" in hs.server_hello.hex_view().title
    assert "<table>" in hs._repr_html_()


def test_reprs_are_readable():
    session = record_session("tls12-ecdhe-gcm")
    hs = parse_handshake(session.client_bytes, session.server_bytes)
    text = repr(hs)
    assert text.startswith("<Handshake TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    assert "client → server  ClientHello (SNI 'localhost'" in text
    assert repr(hs.server_hello) == "<server → ServerHello 69 bytes: TLS 1.2, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256>"
    assert repr(hs.client_hello.extension("server_name")) == "<Extension server_name: localhost>"
    assert repr(hs.client).startswith("<Records client:")


# --- hand-made edge cases -----------------------------------------------------------------------


def _client_hello() -> bytes:
    """The raw ClientHello message (header and body) of a real connection."""
    return record_session("tls13-aes256").client_bytes[5 : 5 + 4 + int.from_bytes(record_session("tls13-aes256").client_bytes[6:9], "big")]


def test_a_message_split_over_records_is_reassembled_and_its_offsets_follow():
    hello = _client_hello()
    first, second = hello[:100], hello[100:]
    stream = record(22, first) + record(22, second)
    records = parse_records(stream)
    assert len(records) == 2 and records[0].items == [] and records[1].messages[0].raw == hello
    message = records[1].messages[0]
    assert message.offset == 5
    # A field cut by the record boundary becomes two spans, around the second header.
    pieces = [s for s in message.stream_spans() if s.start < 110 and s.end > 100]
    assert all(not (105 <= s.start < 110) for s in pieces)
    position = 0
    for span in records.spans():
        assert span.start == position
        position = span.end
    assert position == len(stream)


def test_several_messages_in_one_record():
    hello = _client_hello()
    records = parse_records(record(22, hello + hello))
    assert len(records) == 1 and len(records[0].messages) == 2
    assert records[0].messages[1].offset == 5 + len(hello)


def test_alert_and_change_cipher_spec():
    records = parse_records(record(21, b"\x02\x28") + record(20, b"\x01"), direction="server")
    alert = records[0].items[0]
    assert isinstance(alert, Alert) and alert.level_name == "fatal" and alert.description_name == "handshake_failure"
    assert repr(alert) == "<server → Alert fatal handshake_failure>"
    assert records[1].items[0].name == "ChangeCipherSpec"


def test_unknown_extension_keeps_its_number_and_bytes():
    hello = bytearray(_client_hello())
    # Append an extension of type 0x1234 to the extensions block, fixing up the lengths.
    ext = b"\x12\x34\x00\x03abc"
    parsed = parse_messages(bytes(hello))[0]
    ext_len_at = 4 + 2 + 32 + 1 + len(parsed.session_id) + 2 + 2 * len(parsed.cipher_suites) + 1 + len(parsed.compression_methods)
    total = int.from_bytes(hello[ext_len_at : ext_len_at + 2], "big") + len(ext)
    hello[ext_len_at : ext_len_at + 2] = total.to_bytes(2, "big")
    hello += ext
    hello[1:4] = (len(hello) - 4).to_bytes(3, "big")
    message = parse_messages(bytes(hello))[0]
    unknown = message.extensions[-1]
    assert unknown.type == 0x1234 and unknown.name == "unknown (0x1234)" and unknown.value == b"abc"


def test_names_and_grease():
    assert cipher_suite_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert openssl_cipher_name(0xC02F) == "ECDHE-RSA-AES128-GCM-SHA256"
    assert cipher_suite_name(0x9C) == "TLS_RSA_WITH_AES_128_GCM_SHA256"
    assert [is_grease(v) for v in (0x0A0A, 0xFAFA, 0x0A1A, 0x1301)] == [True, True, False, False]
    assert cipher_suite_name(0x2A2A) == "GREASE (0x2A2A)" and group_name(0xDADA) == "GREASE (0xDADA)"
    assert extension_name(0xBABA) == "GREASE (0xBABA)"
    assert group_name(29) == "x25519" and group_name(4588) == "X25519MLKEM768"
    assert signature_scheme_name(0x0804) == "rsa_pss_rsae_sha256"


@pytest.mark.parametrize(
    "data, words",
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a TLS record type"),
        (record(22, b"\x01\x00\x00\x10abc"), "incomplete"),
        (b"\x16\x03\x03\x01", "truncated record header"),
        (b"\x16\x03\x03\x00\x10abc", "truncated record"),
        (b"\x16\x07\x03\x00\x01a", "not 3.x"),
        (record(20, b"\x01\x01"), "ChangeCipherSpec"),
        (record(22, b"\x02\x00\x00\x02\x03\x03"), "ServerHello is truncated"),
    ],
)
def test_malformed_input_raises_record_error(data, words):
    with pytest.raises(RecordError, match=words):
        parse_records(data)
    lenient = parse_records(data, lenient=True)
    assert lenient.problem and (words in lenient.problem or "malformed" in lenient.problem)


def test_lenient_mode_keeps_what_parsed_before_the_cut():
    session = record_session("tls12-ecdhe-gcm")
    cut = session.server_bytes[:650]  # inside the Certificate's record
    with pytest.raises(RecordError, match="truncated"):
        parse_handshake(session.client_bytes, cut)
    hs = parse_handshake(session.client_bytes, cut, lenient=True)
    assert hs.server_hello is not None and "truncated" in hs.problem
    assert "stopped:" in repr(hs)


# --- fuzzing: nothing but RecordError ever escapes -----------------------------------------------


def _exercise(records) -> None:
    """Everything a notebook might call on a result must work too."""
    repr(records)
    str(records.hex_view())
    records._repr_html_()
    for message in records.messages:
        repr(message), message.summary(), message.stream_spans(), str(message.hex_view())


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    try:
        _exercise(parse_records(data))
    except RecordError:
        pass
    _exercise(parse_records(data, lenient=True))


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_fuzz_random_handshake_records(body):
    """Random bodies inside a well-formed record header reach the message parsers."""
    data = record(22, bytes([body[0] % 26]) + (len(body) - 1).to_bytes(3, "big") + body[1:])
    for tls13 in (None, True, False):
        try:
            _exercise(parse_records(data, tls13=tls13))
        except RecordError:
            pass
        _exercise(parse_records(data, tls13=tls13, lenient=True))




@FUZZ
@given(st.sampled_from(sorted(SCENARIOS)), st.booleans(), EDITS)
def test_fuzz_mutated_real_handshakes(name, client_side, edits):
    session = record_session(name)
    client, server = session.client_bytes, session.server_bytes
    if client_side:
        client = mutate(client, edits)
    else:
        server = mutate(server, edits)
    try:
        hs = parse_handshake(client, server)
        repr(hs), hs._repr_html_(), hs.rows()
    except RecordError:
        pass
    hs = parse_handshake(client, server, lenient=True)
    repr(hs), hs._repr_html_()
    _exercise(hs.client)
    _exercise(hs.server)
