"""Chapter 3's experiment: tampering in flight, and what each end makes of it (real sockets, no mocks).

Every TLS case runs 50 times: the outcome on both ends must be the same every time.
"""

from __future__ import annotations

import re
import time

import pytest

from tlslab.integrity import (
    FORGED_PAYMENT,
    PAYMENT,
    Baseline,
    Delay,
    Drop,
    FlipBit,
    FlipBits,
    Inject,
    Replay,
    TamperResult,
    Truncate,
    baseline,
    data_bit_flip,
    data_replay,
    payment_forgery,
    reply_truncation,
    tamper_experiment,
    xor_mask,
)
from tlslab.wire import CLIENT_TO_SERVER as C, SERVER_TO_CLIENT as S

REPETITIONS = 50


def outcome(result: TamperResult) -> tuple:
    """Both ends in one comparable value: (server error, what it read, client error, what it got)."""
    def error(d):
        return None if d is None else (d.key, d.who)

    return error(result.server_error), result.server_received, error(result.client_error), result.client_reply


def repeat(action, version: str, expected: tuple, *, times: int = REPETITIONS) -> TamperResult:
    started = time.monotonic()
    for run in range(times):
        result = tamper_experiment(PAYMENT, action, version=version)
        assert outcome(result) == expected, f"run {run}: {result}\n{result.events}"
        assert len(result.events) == 1 and result.missed == []
        assert result.server_note is None
    took = (time.monotonic() - started) / times
    assert took < 0.5, f"{took * 1000:.0f} ms per run"
    return result


# --- the lesson's four TLS cases, on both versions, 50 times each ----------------------------------


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_flipped_bit_in_the_clients_data_kills_the_connection(version) -> None:
    action = data_bit_flip(version=version)
    # TLS 1.3: record 3 (the Finished is record 2, an application_data record on the outside);
    # TLS 1.2: record 4, whose first 8 fragment bytes are AES-GCM's explicit nonce.
    assert action == (FlipBit(C, record=3, byte=5, bit=0) if version == "1.3" else FlipBit(C, record=4, byte=13, bit=0))
    last = repeat(action, version, (("bad_record_mac", "server"), b"", ("bad_record_mac", "server"), None))
    assert last.server_error.code == "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"  # the server's own check failed
    assert last.client_error.code == "alert bad_record_mac (20) received"  # the client got the server's alert
    assert last.detected and not last.forged


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_replayed_record_is_rejected(version) -> None:
    action = data_replay(version=version)
    assert action == Replay(C, record=3 if version == "1.3" else 4)
    # The original is read and echoed; the copy arrives where the client's close_notify should
    # be, with the wrong sequence number in its nonce: it fails its check.
    last = repeat(action, version, (("bad_record_mac", "server"), PAYMENT, None, PAYMENT))
    (event,) = last.events
    assert event.after == event.before * 2


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_truncated_reply_is_detected(version) -> None:
    action = reply_truncation(version=version)
    assert action == Truncate(S, after_record=7)  # right after the echo, before close_notify
    last = repeat(action, version, (None, PAYMENT, ("unexpected_eof", "client"), PAYMENT))
    assert "without close_notify" in last.client_story()


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_flipped_bit_in_the_servers_reply_is_caught_by_the_client(version) -> None:
    action = data_bit_flip(version=version, direction=S)
    assert action.record == 7
    repeat(action, version, (None, PAYMENT, ("bad_record_mac", "client"), None))


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_the_payment_forgery_fails_over_tls(version) -> None:
    action = payment_forgery(tls=True, version=version)
    # The same mask as over plaintext, on the ciphertext byte that encrypts the '1'.
    assert action.mask == b"\x08" and action.record == (3 if version == "1.3" else 4)
    assert action.byte == (5 if version == "1.3" else 13) + PAYMENT.index(b"1")
    repeat(action, version, (("bad_record_mac", "server"), b"", ("bad_record_mac", "server"), None))


# --- plaintext: the forgery works, and the rest behaves as stated -----------------------------------


def test_the_payment_forgery_works_over_plaintext() -> None:
    action = payment_forgery()
    assert action == FlipBits(C, offset=11, mask=b"\x08")
    for run in range(5):
        result = tamper_experiment(PAYMENT, action, tls=False)
        assert outcome(result) == (None, FORGED_PAYMENT, None, FORGED_PAYMENT), f"run {run}"
    assert result.forged and not result.detected
    (event,) = result.events
    assert (event.offset, event.before, event.after) == (11, b"1", b"9")
    assert result.capture.client_bytes == PAYMENT and result.sent[C] == FORGED_PAYMENT
    assert repr(result) == (
        "<TamperResult plaintext: XOR the mask 08 into 1 byte(s) at offset 11, client→server → "
        "server accepted b'pay alice $90', client accepted b'pay alice $90'>"
    )


@pytest.mark.parametrize(
    "action, server_got, client_got",
    [
        (Drop(C, offset=4, length=6), b"pay $10", b"pay $10"),
        (Inject(C, b"bob and ", at_offset=4), b"pay bob and alice $10", b"pay bob and alice $10"),
        (Replay(C, offset=0, length=len(PAYMENT)), PAYMENT * 2, PAYMENT * 2),
        (Truncate(C, at_offset=9), b"pay alice", b"pay alice"),  # plaintext cannot tell it was cut
        (Truncate(S, at_offset=4), PAYMENT, b"pay "),
        (Drop(S, offset=10, length=3), PAYMENT, b"pay alice "),
        (FlipBit(S, offset=0, bit=5), PAYMENT, b"Pay alice $10"),
    ],
)
def test_plaintext_tampering_goes_unnoticed(action, server_got, client_got) -> None:
    for run in range(5):
        result = tamper_experiment(PAYMENT, action, tls=False)
        assert outcome(result) == (None, server_got, None, client_got), f"run {run}: {result}"
        assert len(result.events) == 1 and not result.detected


def test_plaintext_delay_delivers_everything_late() -> None:
    started = time.monotonic()
    result = tamper_experiment(PAYMENT, Delay(C, 0.3, offset=10), tls=False)
    assert time.monotonic() - started >= 0.3
    assert outcome(result) == (None, PAYMENT, None, PAYMENT)  # the server reads until the client's end
    assert result.events[0].what == "held the stream at offset 10 for 0.3 s"


# --- more TLS: the outcome says why --------------------------------------------------------------


def test_a_record_from_another_connection_is_rejected() -> None:
    # The attacker recorded the message's record from an earlier session and injects it.
    old = baseline(PAYMENT)
    data = old.data_record(C)
    recorded = old.stream(C)[data.offset : data.offset + data.size]
    result = tamper_experiment(PAYMENT, Inject(C, recorded, before_record=3))
    assert outcome(result) == (("bad_record_mac", "server"), b"", ("bad_record_mac", "server"), None)


def test_a_tampered_handshake_fails_the_handshake() -> None:
    for run in range(5):  # the server's Finished, altered: the client cannot decrypt it
        result = tamper_experiment(PAYMENT, FlipBit(S, record=5, byte=20))
        assert outcome(result) == (("bad_record_mac", "client"), b"", ("bad_record_mac", "client"), None), f"run {run}"
    assert result.server_record.failure is not None  # the server's handshake failed
    assert result.server_story().startswith("the handshake failed: bad_record_mac")


def test_a_longer_record_length_leaves_the_server_waiting_until_it_gives_up() -> None:
    # Byte 3 is the high byte of the length: the server waits for 256 more bytes that never come.
    action = FlipBit(C, record=3, byte=3)
    assert action.describe() == "flip bit 0 of byte 3 (the header's length) of record 3, client→server"
    for run in range(2):
        started = time.monotonic()
        result = tamper_experiment(PAYMENT, action)
        assert outcome(result) == (("timeout", "server"), b"", None, b""), f"run {run}: {result}"
        assert time.monotonic() - started < 3


def test_a_dropped_record_is_never_read() -> None:
    result = tamper_experiment(PAYMENT, Drop(C, record=3))
    assert outcome(result) == (("timeout", "server"), b"", None, b"")


def test_a_delayed_record_arrives_intact() -> None:
    started = time.monotonic()
    result = tamper_experiment(PAYMENT, Delay(C, 0.2, record=3), version="1.2")
    assert time.monotonic() - started >= 0.2
    assert outcome(result) == (None, PAYMENT, None, PAYMENT) and not result.detected


def test_an_action_that_never_finds_its_target() -> None:
    action = FlipBit(C, record=42, byte=5)
    result = tamper_experiment(PAYMENT, action)
    assert outcome(result) == (None, PAYMENT, None, PAYMENT)
    assert result.events == [] and result.missed == [action]
    assert "never happened" in result.attacker_story()


# --- showing a result ----------------------------------------------------------------------------


def test_repr_str_and_html_are_stable() -> None:
    results = [tamper_experiment(PAYMENT, FlipBit(C, record=3, byte=5)) for _ in range(2)]
    assert repr(results[0]) == repr(results[1]) == (
        "<TamperResult TLS 1.3: flip bit 0 of byte 5 of record 3, client→server → "
        "server bad_record_mac, client bad_record_mac>"
    )
    assert str(results[0]) == str(results[1])
    assert str(results[0]).splitlines() == [
        "TLS 1.3, message b'pay alice $10'",
        "  attacker: flip bit 0 of byte 5 of record 3, client→server",
        "  server:   the connection died: bad_record_mac — a record failed its integrity check (the server refused); it read nothing",
        "  client:   its connection failed: bad_record_mac — a record failed its integrity check (the server refused)",
    ]
    pages = [r._repr_html_() for r in results]
    assert pages[0] == pages[1]  # no ciphertext bytes, ports or times in it
    assert "the server: ✗ detected" in pages[0] and "the client: ✗ detected" in pages[0]
    assert "DECRYPTION_FAILED_OR_BAD_RECORD_MAC" in pages[0]
    assert not re.search(r"\b\d{4,5}\b", repr(results[0]) + str(results[0]))  # no port numbers
    plain = tamper_experiment("<b>pay</b> alice $10", FlipBit(C, offset=0, bit=0), tls=False)._repr_html_()
    assert "</b> alice" not in plain and "pay&lt;/b&gt; alice" in plain and "⚠ fooled" in plain  # escaped


def test_baseline_labels_every_record() -> None:
    base = baseline()
    assert isinstance(base, Baseline) and base.decrypted and base.mode == "TLS 1.3"
    client = base.records[C]
    assert [r.outer for r in client] == ["handshake", "change_cipher_spec", "application_data", "application_data",
                                         "application_data"]
    assert [r.content for r in client] == ["ClientHello", "ChangeCipherSpec", "Finished",
                                           "application data b'pay alice $10'", "Alert warning close_notify"]
    data = base.data_record(C)
    assert (data.index, data.plaintext, data.payload_at, data.sequence) == (3, PAYMENT, 5, 0)
    assert base.data_record(S).index == 7
    assert base.locate("$10") == (3, 15) and base.locate(b"pay", S) == (7, 5)
    assert data.describe_byte(3) == "the header's length"
    assert data.describe_byte(15) == "encrypts byte 10 of the data ('$')"
    assert data.describe_byte(18) == "the hidden inner content type (TLS 1.3)"
    assert data.describe_byte(34) == "the authentication tag"
    table = base.table_html(C, record=3, byte=15)
    assert "background:#f5b041" in table and "encrypts byte 10 of the data" in table
    assert "3: application data b&#x27;pay alice $10&#x27; (35 bytes)" in repr(base).replace("'", "&#x27;")
    old = baseline(version="1.2")
    assert old.data_record(C).payload_at == 13 and old.locate("1") == (4, 24)
    assert old.data_record(C).describe_byte(5) == "the explicit nonce (TLS 1.2 AES-GCM)"
    plain = baseline(tls=False)
    assert plain.locate("$10") == (None, 10) and plain.stream(C) == PAYMENT
    assert "target: offset 10, b&#x27;$&#x27;" in plain.table_html(C, byte=10)
    with pytest.raises(ValueError, match="no records"):
        plain.data_record()
    with pytest.raises(ValueError, match="carries"):
        base.locate("bob")


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="type a message"):
        tamper_experiment("", FlipBit(C, offset=0))
    with pytest.raises(ValueError, match="4096 bytes or fewer"):
        tamper_experiment(b"x" * 5000, FlipBit(C, offset=0))
    with pytest.raises(ValueError, match="version"):
        tamper_experiment(PAYMENT, FlipBit(C, offset=0), version="1.1")
    with pytest.raises(ValueError, match="takes actions"):
        tamper_experiment(PAYMENT, "flip a bit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keeps the length"):
        payment_forgery(PAYMENT, "pay alice $100")
    with pytest.raises(ValueError, match="nothing to flip"):
        payment_forgery(PAYMENT, PAYMENT)
    assert xor_mask(PAYMENT, FORGED_PAYMENT)[11] == 0x08


# --- the widget -------------------------------------------------------------------------------------


def test_explorer_drives_the_experiment() -> None:
    from tlslab.widgets import tamper_explorer

    box = tamper_explorer()
    text, mode, direction, record, byte, bit, flip, result, records = box.children
    # It opens on TLS 1.3, aimed at the first byte of the message's record, and has run once.
    assert (mode.value, direction.value, record.value, byte.value, bit.value) == ("TLS 1.3", C, 3, 5, 0)
    assert [label for label, _ in record.options][2:4] == ["2: Finished (74 bytes)", "3: application data b'pay alice $10' (35 bytes)"]
    assert "the server: ✗ detected" in result.value and "bad_record_mac" in result.value
    assert "byte 5: encrypts byte 0 of the data" in records.value

    byte.value = 3  # the length: the server waits, then gives up
    assert "byte 3: the header&#x27;s length" in records.value
    flip.click()
    assert "timeout" in result.value

    direction.value = S  # the records list follows the direction
    assert record.value == 7 and byte.value == 5 and byte.max == 34
    bit.value = 7
    flip.click()
    assert "the client: ✗ detected" in result.value and "the server: ✓ as sent" in result.value

    mode.value = "plaintext"
    assert record.disabled and byte.description == "offset"
    direction.value = C
    byte.value = 11
    bit.value = 3  # '1' (0x31) → '9' (0x39)
    flip.click()
    assert "pay alice $90" in result.value and "⚠ fooled" in result.value

    mode.value = "TLS 1.2"
    assert not record.disabled and record.value == 4 and byte.value == 13
    text.value = ""  # bad input: shown where the result would be, never raised
    assert "ValueError" in result.value
