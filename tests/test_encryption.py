"""Chapter 1's experiments: eavesdropping through a tap, byte statistics, key costs, the explorer."""

from __future__ import annotations

import os

import pytest

from tlslab import plots
from tlslab.bytestats import byte_histogram, describe_entropy, shannon_entropy
from tlslab.costs import measure_costs
from tlslab.eavesdrop import TLS12_SUITES, eavesdrop


def test_plaintext_gives_the_message_away() -> None:
    seen = eavesdrop("password=hunter2", tls=False)
    assert seen.found and seen.delivered
    assert seen.capture.client_bytes == b"password=hunter2"
    assert "readable in the capture" in seen.verdict()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_hides_the_message_but_delivers_it(version: str) -> None:
    secret = "password=" + os.urandom(8).hex()
    seen = eavesdrop(secret, max_version=version)
    assert seen.delivered, seen.report
    assert not seen.found
    assert seen.report is not None and seen.report.version == f"TLSv{version}"
    assert seen.capture.client_bytes[:1] == b"\x16"  # a handshake record opens the conversation


@pytest.mark.parametrize("suite", TLS12_SUITES)
def test_each_offered_tls12_suite_is_the_one_negotiated(suite: str) -> None:
    seen = eavesdrop("hello", cipher=suite)
    assert seen.report is not None and seen.report.ok
    assert seen.report.cipher == suite and seen.report.version == "TLSv1.2"
    assert seen.mode == f"TLS 1.2 with {suite}"


def test_empty_message_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="type a message"):
        eavesdrop("")


def test_entropy_separates_text_from_ciphertext() -> None:
    text = b"the quick brown fox jumps over the lazy dog " * 50
    assert shannon_entropy(b"") == 0.0
    assert shannon_entropy(b"aaaa") == 0.0
    assert shannon_entropy(bytes(range(256))) == pytest.approx(8.0)
    assert 3.5 < shannon_entropy(text) < 5.0
    assert shannon_entropy(os.urandom(8192)) > 7.9
    assert describe_entropy(shannon_entropy(text)) == "full of patterns (like text)"
    assert describe_entropy(shannon_entropy(os.urandom(8192))) == "looks random (like ciphertext)"
    histogram = byte_histogram(b"abca")
    assert len(histogram) == 256 and histogram[ord("a")] == 2 and sum(histogram) == 4


def test_a_long_tls_exchange_looks_random_and_plaintext_does_not() -> None:
    letter = "Dear bank, please move my money before the end of the month. " * 60
    assert describe_entropy(eavesdrop(letter).entropy) == "looks random (like ciphertext)"
    assert describe_entropy(eavesdrop(letter, tls=False).entropy) == "full of patterns (like text)"


def test_costs_rank_rsa_keygen_far_behind_elliptic_curves() -> None:
    table = measure_costs(("ecdsa", "rsa2048"), keygen_runs=3, handshake_runs=3)
    assert table.ratio("rsa2048", "ecdsa") > 20
    assert set(table.handshake_ms) == {"ecdsa", "rsa2048"} and all(v > 0 for v in table.handshake_ms.values())
    assert "RSA 2048" in repr(table) and "<table>" in table._repr_html_()
    figure = plots.costs(table)
    assert [ax.get_title() for ax in figure.axes] == ["generating one key", "one full handshake (connect)"]


def test_histogram_figure_titles_carry_the_entropy_words() -> None:
    figure = plots.byte_histograms({"plaintext": b"hello hello hello", "random": os.urandom(4096)})
    titles = [ax.get_title() for ax in figure.axes]
    assert "like text" in titles[0] and "like ciphertext" in titles[1]


def test_explorer_wires_inputs_to_the_experiment() -> None:
    from tlslab.widgets import eavesdrop_explorer

    box = eavesdrop_explorer("my secret")
    text, mode, suite, send, result, histogram = box.children
    assert text.value == "my secret" and mode.value == "TLS 1.3" and suite.disabled
    mode.value = "TLS 1.2"
    assert not suite.disabled
    mode.value = "plaintext"
    assert suite.disabled
    assert "nowhere in the capture" in result.value and bytes(histogram.value).startswith(b"\x89PNG")
    send.click()
    assert "plaintext: your message is readable" in result.value
    text.value = ""
    send.click()  # bad input: shown as an error in the result, never raised
    assert "ValueError" in result.value
