"""Parse captured TLS bytes into records and handshake messages, and annotate them byte by byte.

A TCP connection carries two byte streams, one per direction. TLS cuts each stream into
*records* (a 5-byte header: content type, version, length; then the fragment). Handshake
messages travel inside handshake records; one record may hold several messages and one message
may spill over several records, so the handshake stream is reassembled before it is read.

    >>> records = parse_records(server_bytes)            # doctest: +SKIP
    >>> hs = parse_handshake(client_bytes, server_bytes)  # doctest: +SKIP
    >>> hs.client_hello.server_name, hs.cipher_suite      # doctest: +SKIP
    ('localhost', 'TLS_AES_256_GCM_SHA384')

Every parsed item remembers where its bytes are (:class:`Span`: start, end, label), so the
annotated hex view (:class:`HexView`, shown by ``_repr_html_``) is computed from the bytes
themselves. Malformed or truncated input raises :class:`RecordError` (a ``ValueError``) and
nothing else; ``lenient=True`` parses what it can instead and says where it stopped
(``records.problem``).

The names of cipher suites, groups, signature schemes, extensions and alerts come from the IANA
TLS registries; the tables below are plain data.
"""

from __future__ import annotations

import bisect
import hashlib
import html
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

__all__ = [
    "ALERT_DESCRIPTIONS",
    "Alert",
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateVerify",
    "ChangeCipherSpec",
    "CIPHER_SUITES",
    "ClientHello",
    "ClientKeyExchange",
    "CONTENT_TYPES",
    "EncryptedExtensions",
    "Extension",
    "EXTENSION_TYPES",
    "Finished",
    "GROUPS",
    "Handshake",
    "HANDSHAKE_TYPES",
    "HandshakeMessage",
    "HelloRetryRequest",
    "HexView",
    "KeyShareEntry",
    "KeyUpdate",
    "NewSessionTicket",
    "PskIdentity",
    "Record",
    "RecordError",
    "Records",
    "ServerHello",
    "ServerHelloDone",
    "ServerKeyExchange",
    "SIGNATURE_SCHEMES",
    "Span",
    "is_grease",
    "alert_name",
    "capture_chunks",
    "cipher_suite_name",
    "extension_name",
    "group_name",
    "handshake_type_name",
    "interleave",
    "openssl_cipher_name",
    "parse_capture",
    "parse_handshake",
    "parse_messages",
    "parse_records",
    "signature_scheme_name",
    "version_name",
]


class RecordError(ValueError):
    """The bytes are not well-formed TLS: truncated, inconsistent lengths, or not TLS at all."""


# --- the IANA tables, as data ----------------------------------------------------------------

CONTENT_TYPES: dict[int, str] = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    24: "heartbeat",
}

VERSIONS: dict[int, str] = {
    0x0200: "SSL 2.0",
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}

HANDSHAKE_TYPES: dict[int, str] = {
    0: "hello_request",
    1: "client_hello",
    2: "server_hello",
    3: "hello_verify_request",
    4: "new_session_ticket",
    5: "end_of_early_data",
    6: "hello_retry_request",
    8: "encrypted_extensions",
    11: "certificate",
    12: "server_key_exchange",
    13: "certificate_request",
    14: "server_hello_done",
    15: "certificate_verify",
    16: "client_key_exchange",
    20: "finished",
    21: "certificate_url",
    22: "certificate_status",
    23: "supplemental_data",
    24: "key_update",
    25: "compressed_certificate",
    254: "message_hash",
}

EXTENSION_TYPES: dict[int, str] = {
    0: "server_name",
    1: "max_fragment_length",
    2: "client_certificate_url",
    3: "trusted_ca_keys",
    4: "truncated_hmac",
    5: "status_request",
    6: "user_mapping",
    7: "client_authz",
    8: "server_authz",
    9: "cert_type",
    10: "supported_groups",
    11: "ec_point_formats",
    12: "srp",
    13: "signature_algorithms",
    14: "use_srtp",
    15: "heartbeat",
    16: "application_layer_protocol_negotiation",
    17: "status_request_v2",
    18: "signed_certificate_timestamp",
    19: "client_certificate_type",
    20: "server_certificate_type",
    21: "padding",
    22: "encrypt_then_mac",
    23: "extended_master_secret",
    24: "token_binding",
    25: "cached_info",
    26: "tls_lts",
    27: "compress_certificate",
    28: "record_size_limit",
    29: "pwd_protect",
    30: "pwd_clear",
    31: "password_salt",
    32: "ticket_pinning",
    33: "tls_cert_with_extern_psk",
    34: "delegated_credential",
    35: "session_ticket",
    36: "TLMSP",
    37: "TLMSP_proxying",
    38: "TLMSP_delegate",
    39: "supported_ekt_ciphers",
    41: "pre_shared_key",
    42: "early_data",
    43: "supported_versions",
    44: "cookie",
    45: "psk_key_exchange_modes",
    47: "certificate_authorities",
    48: "oid_filters",
    49: "post_handshake_auth",
    50: "signature_algorithms_cert",
    51: "key_share",
    52: "transparency_info",
    53: "connection_id_deprecated",
    54: "connection_id",
    55: "external_id_hash",
    56: "external_session_id",
    57: "quic_transport_parameters",
    58: "ticket_request",
    59: "dnssec_chain",
    60: "sequence_number_encryption_algorithms",
    61: "rrc",
    13172: "next_protocol_negotiation",
    17513: "application_settings",
    64768: "ech_outer_extensions",
    65037: "encrypted_client_hello",
    65281: "renegotiation_info",
}

GROUPS: dict[int, str] = {
    1: "sect163k1", 2: "sect163r1", 3: "sect163r2", 4: "sect193r1", 5: "sect193r2", 6: "sect233k1",
    7: "sect233r1", 8: "sect239k1", 9: "sect283k1", 10: "sect283r1", 11: "sect409k1",
    12: "sect409r1", 13: "sect571k1", 14: "sect571r1", 15: "secp160k1", 16: "secp160r1",
    17: "secp160r2", 18: "secp192k1", 19: "secp192r1", 20: "secp224k1", 21: "secp224r1",
    22: "secp256k1",
    23: "secp256r1",
    24: "secp384r1",
    25: "secp521r1",
    26: "brainpoolP256r1",
    27: "brainpoolP384r1",
    28: "brainpoolP512r1",
    29: "x25519",
    30: "x448",
    31: "brainpoolP256r1tls13",
    32: "brainpoolP384r1tls13",
    33: "brainpoolP512r1tls13",
    34: "GC256A", 35: "GC256B", 36: "GC256C", 37: "GC256D", 38: "GC512A", 39: "GC512B", 40: "GC512C",
    41: "curveSM2",
    256: "ffdhe2048",
    257: "ffdhe3072",
    258: "ffdhe4096",
    259: "ffdhe6144",
    260: "ffdhe8192",
    512: "MLKEM512",
    513: "MLKEM768",
    514: "MLKEM1024",
    4587: "SecP256r1MLKEM768",
    4588: "X25519MLKEM768",
    4589: "SecP384r1MLKEM1024",
    25497: "X25519Kyber768Draft00",
    65281: "arbitrary_explicit_prime_curves",
    65282: "arbitrary_explicit_char2_curves",
}

SIGNATURE_SCHEMES: dict[int, str] = {
    0x0201: "rsa_pkcs1_sha1",
    0x0202: "dsa_sha1",
    0x0203: "ecdsa_sha1",
    0x0301: "rsa_pkcs1_sha224",
    0x0302: "dsa_sha224",
    0x0303: "ecdsa_sha224",
    0x0401: "rsa_pkcs1_sha256",
    0x0402: "dsa_sha256",
    0x0403: "ecdsa_secp256r1_sha256",
    0x0420: "rsa_pkcs1_sha256_legacy",
    0x0501: "rsa_pkcs1_sha384",
    0x0502: "dsa_sha384",
    0x0503: "ecdsa_secp384r1_sha384",
    0x0520: "rsa_pkcs1_sha384_legacy",
    0x0601: "rsa_pkcs1_sha512",
    0x0602: "dsa_sha512",
    0x0603: "ecdsa_secp521r1_sha512",
    0x0620: "rsa_pkcs1_sha512_legacy",
    0x0704: "eccsi_sha256",
    0x0705: "iso_ibs1",
    0x0706: "iso_ibs2",
    0x0707: "iso_chinese_ibs",
    0x0708: "sm2sig_sm3",
    0x0709: "gostr34102012_256a",
    0x070A: "gostr34102012_256b",
    0x070B: "gostr34102012_256c",
    0x070C: "gostr34102012_256d",
    0x070D: "gostr34102012_512a",
    0x070E: "gostr34102012_512b",
    0x070F: "gostr34102012_512c",
    0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519",
    0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256",
    0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512",
    0x081A: "ecdsa_brainpoolP256r1tls13_sha256",
    0x081B: "ecdsa_brainpoolP384r1tls13_sha384",
    0x081C: "ecdsa_brainpoolP512r1tls13_sha512",
    0x0840: "gostr34102012_256",
    0x0841: "gostr34102012_512",
    0x0904: "mldsa44",
    0x0905: "mldsa65",
    0x0906: "mldsa87",
    0xEEEE: "gost2012_256",
    0xEFEF: "gost2012_512",
    0xEDED: "gost2001",
}

# Cipher suite code → (IANA name, OpenSSL name). Every suite OpenSSL 3.0 knows
# (`openssl ciphers -V -stdname ALL:COMPLEMENTOFALL`), plus the signalling values and a few
# legacy suites a capture may still show.
CIPHER_SUITES: dict[int, tuple[str, str]] = {
    0x0000: ("TLS_NULL_WITH_NULL_NULL", "NULL"),
    0x0001: ("TLS_RSA_WITH_NULL_MD5", "NULL-MD5"),
    0x0002: ("TLS_RSA_WITH_NULL_SHA", "NULL-SHA"),
    0x0004: ("TLS_RSA_WITH_RC4_128_MD5", "RC4-MD5"),
    0x0005: ("TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"),
    0x000A: ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    0x0016: ("TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA", "DHE-RSA-DES-CBC3-SHA"),
    0x002C: ("TLS_PSK_WITH_NULL_SHA", "PSK-NULL-SHA"),
    0x002D: ("TLS_DHE_PSK_WITH_NULL_SHA", "DHE-PSK-NULL-SHA"),
    0x002E: ("TLS_RSA_PSK_WITH_NULL_SHA", "RSA-PSK-NULL-SHA"),
    0x002F: ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    0x0032: ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA"),
    0x0033: ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA"),
    0x0034: ("TLS_DH_anon_WITH_AES_128_CBC_SHA", "ADH-AES128-SHA"),
    0x0035: ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    0x0038: ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA"),
    0x0039: ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA"),
    0x003A: ("TLS_DH_anon_WITH_AES_256_CBC_SHA", "ADH-AES256-SHA"),
    0x003B: ("TLS_RSA_WITH_NULL_SHA256", "NULL-SHA256"),
    0x003C: ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    0x003D: ("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    0x0040: ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", "DHE-DSS-AES128-SHA256"),
    0x0041: ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA"),
    0x0044: ("TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", "DHE-DSS-CAMELLIA128-SHA"),
    0x0045: ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA"),
    0x0046: ("TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA", "ADH-CAMELLIA128-SHA"),
    0x0067: ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256"),
    0x006A: ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", "DHE-DSS-AES256-SHA256"),
    0x006B: ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256"),
    0x006C: ("TLS_DH_anon_WITH_AES_128_CBC_SHA256", "ADH-AES128-SHA256"),
    0x006D: ("TLS_DH_anon_WITH_AES_256_CBC_SHA256", "ADH-AES256-SHA256"),
    0x0084: ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA"),
    0x0087: ("TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", "DHE-DSS-CAMELLIA256-SHA"),
    0x0088: ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA"),
    0x0089: ("TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA", "ADH-CAMELLIA256-SHA"),
    0x008C: ("TLS_PSK_WITH_AES_128_CBC_SHA", "PSK-AES128-CBC-SHA"),
    0x008D: ("TLS_PSK_WITH_AES_256_CBC_SHA", "PSK-AES256-CBC-SHA"),
    0x0090: ("TLS_DHE_PSK_WITH_AES_128_CBC_SHA", "DHE-PSK-AES128-CBC-SHA"),
    0x0091: ("TLS_DHE_PSK_WITH_AES_256_CBC_SHA", "DHE-PSK-AES256-CBC-SHA"),
    0x0094: ("TLS_RSA_PSK_WITH_AES_128_CBC_SHA", "RSA-PSK-AES128-CBC-SHA"),
    0x0095: ("TLS_RSA_PSK_WITH_AES_256_CBC_SHA", "RSA-PSK-AES256-CBC-SHA"),
    0x009C: ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    0x009D: ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    0x009E: ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    0x009F: ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    0x00A2: ("TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256"),
    0x00A3: ("TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384"),
    0x00A6: ("TLS_DH_anon_WITH_AES_128_GCM_SHA256", "ADH-AES128-GCM-SHA256"),
    0x00A7: ("TLS_DH_anon_WITH_AES_256_GCM_SHA384", "ADH-AES256-GCM-SHA384"),
    0x00A8: ("TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256"),
    0x00A9: ("TLS_PSK_WITH_AES_256_GCM_SHA384", "PSK-AES256-GCM-SHA384"),
    0x00AA: ("TLS_DHE_PSK_WITH_AES_128_GCM_SHA256", "DHE-PSK-AES128-GCM-SHA256"),
    0x00AB: ("TLS_DHE_PSK_WITH_AES_256_GCM_SHA384", "DHE-PSK-AES256-GCM-SHA384"),
    0x00AC: ("TLS_RSA_PSK_WITH_AES_128_GCM_SHA256", "RSA-PSK-AES128-GCM-SHA256"),
    0x00AD: ("TLS_RSA_PSK_WITH_AES_256_GCM_SHA384", "RSA-PSK-AES256-GCM-SHA384"),
    0x00AE: ("TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256"),
    0x00AF: ("TLS_PSK_WITH_AES_256_CBC_SHA384", "PSK-AES256-CBC-SHA384"),
    0x00B0: ("TLS_PSK_WITH_NULL_SHA256", "PSK-NULL-SHA256"),
    0x00B1: ("TLS_PSK_WITH_NULL_SHA384", "PSK-NULL-SHA384"),
    0x00B2: ("TLS_DHE_PSK_WITH_AES_128_CBC_SHA256", "DHE-PSK-AES128-CBC-SHA256"),
    0x00B3: ("TLS_DHE_PSK_WITH_AES_256_CBC_SHA384", "DHE-PSK-AES256-CBC-SHA384"),
    0x00B4: ("TLS_DHE_PSK_WITH_NULL_SHA256", "DHE-PSK-NULL-SHA256"),
    0x00B5: ("TLS_DHE_PSK_WITH_NULL_SHA384", "DHE-PSK-NULL-SHA384"),
    0x00B6: ("TLS_RSA_PSK_WITH_AES_128_CBC_SHA256", "RSA-PSK-AES128-CBC-SHA256"),
    0x00B7: ("TLS_RSA_PSK_WITH_AES_256_CBC_SHA384", "RSA-PSK-AES256-CBC-SHA384"),
    0x00B8: ("TLS_RSA_PSK_WITH_NULL_SHA256", "RSA-PSK-NULL-SHA256"),
    0x00B9: ("TLS_RSA_PSK_WITH_NULL_SHA384", "RSA-PSK-NULL-SHA384"),
    0x00BA: ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256", "CAMELLIA128-SHA256"),
    0x00BD: ("TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256", "DHE-DSS-CAMELLIA128-SHA256"),
    0x00BE: ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", "DHE-RSA-CAMELLIA128-SHA256"),
    0x00BF: ("TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256", "ADH-CAMELLIA128-SHA256"),
    0x00C0: ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256", "CAMELLIA256-SHA256"),
    0x00C3: ("TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256", "DHE-DSS-CAMELLIA256-SHA256"),
    0x00C4: ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256", "DHE-RSA-CAMELLIA256-SHA256"),
    0x00C5: ("TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256", "ADH-CAMELLIA256-SHA256"),
    0x00FF: ("TLS_EMPTY_RENEGOTIATION_INFO_SCSV", "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"),
    0x1301: ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    0x1302: ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    0x1303: ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"),
    0x1304: ("TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_SHA256"),
    0x1305: ("TLS_AES_128_CCM_8_SHA256", "TLS_AES_128_CCM_8_SHA256"),
    0x5600: ("TLS_FALLBACK_SCSV", "TLS_FALLBACK_SCSV"),
    0xC006: ("TLS_ECDHE_ECDSA_WITH_NULL_SHA", "ECDHE-ECDSA-NULL-SHA"),
    0xC009: ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    0xC00A: ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    0xC010: ("TLS_ECDHE_RSA_WITH_NULL_SHA", "ECDHE-RSA-NULL-SHA"),
    0xC012: ("TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"),
    0xC013: ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    0xC014: ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    0xC015: ("TLS_ECDH_anon_WITH_NULL_SHA", "AECDH-NULL-SHA"),
    0xC018: ("TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "AECDH-AES128-SHA"),
    0xC019: ("TLS_ECDH_anon_WITH_AES_256_CBC_SHA", "AECDH-AES256-SHA"),
    0xC01D: ("TLS_SRP_SHA_WITH_AES_128_CBC_SHA", "SRP-AES-128-CBC-SHA"),
    0xC01E: ("TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA", "SRP-RSA-AES-128-CBC-SHA"),
    0xC01F: ("TLS_SRP_SHA_DSS_WITH_AES_128_CBC_SHA", "SRP-DSS-AES-128-CBC-SHA"),
    0xC020: ("TLS_SRP_SHA_WITH_AES_256_CBC_SHA", "SRP-AES-256-CBC-SHA"),
    0xC021: ("TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA", "SRP-RSA-AES-256-CBC-SHA"),
    0xC022: ("TLS_SRP_SHA_DSS_WITH_AES_256_CBC_SHA", "SRP-DSS-AES-256-CBC-SHA"),
    0xC023: ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    0xC024: ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    0xC027: ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    0xC028: ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
    0xC02B: ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    0xC02C: ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    0xC02F: ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    0xC030: ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    0xC035: ("TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", "ECDHE-PSK-AES128-CBC-SHA"),
    0xC036: ("TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA", "ECDHE-PSK-AES256-CBC-SHA"),
    0xC037: ("TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", "ECDHE-PSK-AES128-CBC-SHA256"),
    0xC038: ("TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384", "ECDHE-PSK-AES256-CBC-SHA384"),
    0xC039: ("TLS_ECDHE_PSK_WITH_NULL_SHA", "ECDHE-PSK-NULL-SHA"),
    0xC03A: ("TLS_ECDHE_PSK_WITH_NULL_SHA256", "ECDHE-PSK-NULL-SHA256"),
    0xC03B: ("TLS_ECDHE_PSK_WITH_NULL_SHA384", "ECDHE-PSK-NULL-SHA384"),
    0xC050: ("TLS_RSA_WITH_ARIA_128_GCM_SHA256", "ARIA128-GCM-SHA256"),
    0xC051: ("TLS_RSA_WITH_ARIA_256_GCM_SHA384", "ARIA256-GCM-SHA384"),
    0xC052: ("TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256", "DHE-RSA-ARIA128-GCM-SHA256"),
    0xC053: ("TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384", "DHE-RSA-ARIA256-GCM-SHA384"),
    0xC056: ("TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256", "DHE-DSS-ARIA128-GCM-SHA256"),
    0xC057: ("TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384", "DHE-DSS-ARIA256-GCM-SHA384"),
    0xC05C: ("TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256", "ECDHE-ECDSA-ARIA128-GCM-SHA256"),
    0xC05D: ("TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384", "ECDHE-ECDSA-ARIA256-GCM-SHA384"),
    0xC060: ("TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256", "ECDHE-ARIA128-GCM-SHA256"),
    0xC061: ("TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384", "ECDHE-ARIA256-GCM-SHA384"),
    0xC06A: ("TLS_PSK_WITH_ARIA_128_GCM_SHA256", "PSK-ARIA128-GCM-SHA256"),
    0xC06B: ("TLS_PSK_WITH_ARIA_256_GCM_SHA384", "PSK-ARIA256-GCM-SHA384"),
    0xC06C: ("TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256", "DHE-PSK-ARIA128-GCM-SHA256"),
    0xC06D: ("TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384", "DHE-PSK-ARIA256-GCM-SHA384"),
    0xC06E: ("TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256", "RSA-PSK-ARIA128-GCM-SHA256"),
    0xC06F: ("TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384", "RSA-PSK-ARIA256-GCM-SHA384"),
    0xC072: ("TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256", "ECDHE-ECDSA-CAMELLIA128-SHA256"),
    0xC073: ("TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384", "ECDHE-ECDSA-CAMELLIA256-SHA384"),
    0xC076: ("TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256", "ECDHE-RSA-CAMELLIA128-SHA256"),
    0xC077: ("TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384", "ECDHE-RSA-CAMELLIA256-SHA384"),
    0xC094: ("TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256", "PSK-CAMELLIA128-SHA256"),
    0xC095: ("TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384", "PSK-CAMELLIA256-SHA384"),
    0xC096: ("TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256", "DHE-PSK-CAMELLIA128-SHA256"),
    0xC097: ("TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384", "DHE-PSK-CAMELLIA256-SHA384"),
    0xC098: ("TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256", "RSA-PSK-CAMELLIA128-SHA256"),
    0xC099: ("TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384", "RSA-PSK-CAMELLIA256-SHA384"),
    0xC09A: ("TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256", "ECDHE-PSK-CAMELLIA128-SHA256"),
    0xC09B: ("TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384", "ECDHE-PSK-CAMELLIA256-SHA384"),
    0xC09C: ("TLS_RSA_WITH_AES_128_CCM", "AES128-CCM"),
    0xC09D: ("TLS_RSA_WITH_AES_256_CCM", "AES256-CCM"),
    0xC09E: ("TLS_DHE_RSA_WITH_AES_128_CCM", "DHE-RSA-AES128-CCM"),
    0xC09F: ("TLS_DHE_RSA_WITH_AES_256_CCM", "DHE-RSA-AES256-CCM"),
    0xC0A0: ("TLS_RSA_WITH_AES_128_CCM_8", "AES128-CCM8"),
    0xC0A1: ("TLS_RSA_WITH_AES_256_CCM_8", "AES256-CCM8"),
    0xC0A2: ("TLS_DHE_RSA_WITH_AES_128_CCM_8", "DHE-RSA-AES128-CCM8"),
    0xC0A3: ("TLS_DHE_RSA_WITH_AES_256_CCM_8", "DHE-RSA-AES256-CCM8"),
    0xC0A4: ("TLS_PSK_WITH_AES_128_CCM", "PSK-AES128-CCM"),
    0xC0A5: ("TLS_PSK_WITH_AES_256_CCM", "PSK-AES256-CCM"),
    0xC0A6: ("TLS_DHE_PSK_WITH_AES_128_CCM", "DHE-PSK-AES128-CCM"),
    0xC0A7: ("TLS_DHE_PSK_WITH_AES_256_CCM", "DHE-PSK-AES256-CCM"),
    0xC0A8: ("TLS_PSK_WITH_AES_128_CCM_8", "PSK-AES128-CCM8"),
    0xC0A9: ("TLS_PSK_WITH_AES_256_CCM_8", "PSK-AES256-CCM8"),
    0xC0AA: ("TLS_PSK_DHE_WITH_AES_128_CCM_8", "DHE-PSK-AES128-CCM8"),
    0xC0AB: ("TLS_PSK_DHE_WITH_AES_256_CCM_8", "DHE-PSK-AES256-CCM8"),
    0xC0AC: ("TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM"),
    0xC0AD: ("TLS_ECDHE_ECDSA_WITH_AES_256_CCM", "ECDHE-ECDSA-AES256-CCM"),
    0xC0AE: ("TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ECDHE-ECDSA-AES128-CCM8"),
    0xC0AF: ("TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8", "ECDHE-ECDSA-AES256-CCM8"),
    0xCCA8: ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    0xCCA9: ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    0xCCAA: ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
    0xCCAB: ("TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", "PSK-CHACHA20-POLY1305"),
    0xCCAC: ("TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-PSK-CHACHA20-POLY1305"),
    0xCCAD: ("TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256", "DHE-PSK-CHACHA20-POLY1305"),
    0xCCAE: ("TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256", "RSA-PSK-CHACHA20-POLY1305"),
}

ALERT_LEVELS: dict[int, str] = {1: "warning", 2: "fatal"}

ALERT_DESCRIPTIONS: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}

PSK_KEY_EXCHANGE_MODES: dict[int, str] = {0: "psk_ke", 1: "psk_dhe_ke"}
EC_POINT_FORMATS: dict[int, str] = {0: "uncompressed", 1: "ansiX962_compressed_prime", 2: "ansiX962_compressed_char2"}
CERTIFICATE_COMPRESSION: dict[int, str] = {1: "zlib", 2: "brotli", 3: "zstd"}
CERTIFICATE_TYPES: dict[int, str] = {1: "rsa_sign", 2: "dss_sign", 3: "rsa_fixed_dh", 4: "dss_fixed_dh", 64: "ecdsa_sign", 65: "rsa_fixed_ecdh", 66: "ecdsa_fixed_ecdh"}

# ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446, 4.1.3).
HELLO_RETRY_REQUEST_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
# The last 8 bytes of a ServerHello.random when a TLS 1.3 server was pushed down to 1.2 or below.
DOWNGRADE_SENTINELS = {b"DOWNGRD\x01": "TLS 1.2", b"DOWNGRD\x00": "TLS 1.1 or below"}

MAX_RECORD_LENGTH = 2**14 + 2048  # the largest ciphertext TLS 1.2 allows (RFC 5246, 6.2.3)


def is_grease(value: int) -> bool:
    """GREASE values (RFC 8701): 0x0A0A, 0x1A1A, … 0xFAFA, sent to keep servers tolerant."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def _named(table: dict[int, str], value: int, width: int = 4) -> str:
    if value in table:
        return table[value]
    if width == 4 and is_grease(value):
        return f"GREASE (0x{value:04X})"
    return f"unknown (0x{value:0{width}X})"


def cipher_suite_name(code: int) -> str:
    """``0x1301`` → ``'TLS_AES_128_GCM_SHA256'`` (the IANA name)."""
    entry = CIPHER_SUITES.get(code)
    return entry[0] if entry else _named({}, code)


def openssl_cipher_name(code: int) -> str:
    """``0xC02F`` → ``'ECDHE-RSA-AES128-GCM-SHA256'`` (what ``ssl`` and ``openssl`` call it)."""
    entry = CIPHER_SUITES.get(code)
    return entry[1] if entry else _named({}, code)


def group_name(code: int) -> str:
    """``29`` → ``'x25519'``."""
    return _named(GROUPS, code)


def signature_scheme_name(code: int) -> str:
    """``0x0804`` → ``'rsa_pss_rsae_sha256'``."""
    return _named(SIGNATURE_SCHEMES, code)


def extension_name(code: int) -> str:
    """``0`` → ``'server_name'``."""
    return _named(EXTENSION_TYPES, code)


def handshake_type_name(code: int) -> str:
    """``1`` → ``'client_hello'``."""
    return _named(HANDSHAKE_TYPES, code, 2)


def alert_name(code: int) -> str:
    """``40`` → ``'handshake_failure'``."""
    return _named(ALERT_DESCRIPTIONS, code, 2)


def version_name(code: int) -> str:
    """``0x0303`` → ``'TLS 1.2'``."""
    if code in VERSIONS:
        return VERSIONS[code]
    if 0x7F00 <= code <= 0x7FFF:
        return f"TLS 1.3 draft {code & 0xFF}"
    return _named({}, code)


# --- spans: where each field sits ------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A labelled run of bytes: ``data[start:end]`` is the field called ``label``.

    ``kind`` picks the colour in the hex view; ``note`` is the decoded value, in words.
    """

    start: int
    end: int
    label: str
    kind: str = "field"
    note: str = ""

    def shifted(self, delta: int) -> "Span":
        return Span(self.start + delta, self.end + delta, self.label, self.kind, self.note)


class _Reader:
    """Reads big-endian fields, raising :class:`RecordError` (never IndexError) past the end.

    Positions in spans are ``base + position``: the coordinates of whatever the caller annotates.
    """

    def __init__(self, data: bytes, what: str, spans: list[Span] | None = None, base: int = 0) -> None:
        self.data = data
        self.what = what
        self.spans = spans
        self.base = base
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, label: str) -> tuple[int, bytes]:
        if n > self.left:
            raise RecordError(
                f"{self.what} is truncated: {label} needs {n} byte{'s' if n != 1 else ''} "
                f"at offset {self.base + self.pos}, but only {self.left} remain"
            )
        start = self.pos
        self.pos += n
        return start, self.data[start : self.pos]

    def mark(self, start: int, label: str, kind: str, note: str = "") -> None:
        """Record a span from ``start`` (a position in this reader) to the current position."""
        if self.spans is not None and self.pos > start:
            self.spans.append(Span(self.base + start, self.base + self.pos, label, kind, note))

    def int(self, size: int, label: str, kind: str = "field", describe: Callable[[int], str] | None = None) -> int:
        start, raw = self._take(size, label)
        value = int.from_bytes(raw, "big")
        self.mark(start, label, kind, describe(value) if describe else str(value))
        return value

    def bytes(self, n: int, label: str, kind: str = "field", note: str | None = None) -> bytes:
        start, raw = self._take(n, label)
        self.mark(start, label, kind, note if note is not None else _hex_preview(raw))
        return raw

    def vector(self, length_size: int, label: str, kind: str = "field") -> "_Reader":
        """Read a length prefix (annotated) and return a reader over exactly that many bytes."""
        n = self.int(length_size, f"{label} length", "length", _size)
        start, raw = self._take(n, label)
        return _Reader(raw, f"{self.what}: {label}", self.spans, self.base + start)

    def opaque(self, length_size: int, label: str, kind: str = "field", note: Callable[[bytes], str] | None = None) -> bytes:
        """A length-prefixed byte string, annotated as a length span and a value span."""
        sub = self.vector(length_size, label, kind)
        raw = sub.data
        if raw:
            sub.pos = len(raw)
            sub.mark(0, label, kind, note(raw) if note else _hex_preview(raw))
        return raw

    def rest(self, label: str, kind: str = "field", note: str | None = None) -> bytes:
        return self.bytes(self.left, label, kind, note)

    def done(self) -> None:
        if self.left:
            raise RecordError(f"{self.what} has {self.left} unexpected byte{'s' if self.left != 1 else ''} at its end")


def _size(n: int) -> str:
    """``1 byte``, ``2 bytes``."""
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _hex_preview(raw: bytes, limit: int = 16) -> str:
    if len(raw) <= limit:
        return raw.hex()
    return f"{raw[:limit].hex()}… ({len(raw)} bytes)"


def _text(raw: bytes) -> str:
    """Bytes that should be ASCII text (host names, protocol names), shown safely."""
    return raw.decode("ascii", "backslashreplace")


# --- extensions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyShareEntry:
    """One key share: a group and the public key for it (TLS 1.3)."""

    group: int
    key_exchange: bytes

    @property
    def group_name(self) -> str:
        return group_name(self.group)

    def __repr__(self) -> str:
        return f"KeyShareEntry({self.group_name}, {len(self.key_exchange)} bytes)"


@dataclass(frozen=True)
class PskIdentity:
    """A pre-shared key the client offers (a session ticket, in resumption)."""

    identity: bytes
    obfuscated_ticket_age: int

    def __repr__(self) -> str:
        return f"PskIdentity({len(self.identity)} bytes, age+{self.obfuscated_ticket_age})"


@dataclass(eq=False)
class Extension:
    """One extension: its type, its raw data, and the data decoded (``value``).

    ``value`` is plain Python: a list of names, a host name, a number, ``True`` for the empty
    "flag" extensions, or the raw bytes for an extension this module does not decode.
    """

    type: int
    data: bytes
    value: Any = None
    problem: str | None = None

    @property
    def name(self) -> str:
        return extension_name(self.type)

    @property
    def summary(self) -> str:
        return _summarize(self.value)

    def __repr__(self) -> str:
        if self.problem:
            return f"<Extension {self.name}: malformed ({self.problem})>"
        return f"<Extension {self.name}: {self.summary}>"


def _summarize(value: Any) -> str:
    if value is True:
        return "yes"
    if value is None:
        return "(empty)"
    if isinstance(value, bytes):
        return _hex_preview(value) if value else "(empty)"
    if isinstance(value, (list, tuple)):
        return ", ".join(_summarize(v) if not isinstance(v, str) else v for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_summarize(v)}" for k, v in value.items())
    return str(value) if not hasattr(value, "__dataclass_fields__") else repr(value)


def _u16_names(r: _Reader, length_size: int, label: str, namer: Callable[[int], str], kind: str) -> list[str]:
    items = r.vector(length_size, f"{label} list")
    names: list[str] = []
    while items.left:
        names.append(namer(items.int(2, label, kind, namer)))
    return names


def _u8_names(r: _Reader, label: str, table: dict[int, str]) -> list[str]:
    items = r.vector(1, f"{label} list")
    names: list[str] = []
    while items.left:
        names.append(_named(table, items.int(1, label, "ext-data", lambda v: _named(table, v, 2)), 2))
    return names


def _ext_server_name(r: _Reader, where: str) -> Any:
    if not r.left:  # the server's acknowledgement is empty
        return True
    names = r.vector(2, "server name list")
    hosts: list[str] = []
    while names.left:
        kind = names.int(1, "name type", "ext-data", lambda v: "host_name" if v == 0 else f"type {v}")
        host = names.opaque(2, "host name", "sni", lambda raw: _text(raw))
        if kind == 0:
            hosts.append(_text(host))
    return hosts[0] if len(hosts) == 1 else hosts


def _ext_alpn(r: _Reader, where: str) -> Any:
    protocols = r.vector(2, "protocol list")
    names: list[str] = []
    while protocols.left:
        names.append(_text(protocols.opaque(1, "protocol", "alpn", _text)))
    return names


def _ext_supported_versions(r: _Reader, where: str) -> Any:
    if where == "client_hello":
        return _u8_prefixed_u16_names(r)
    return version_name(r.int(2, "selected version", "version", version_name))


def _u8_prefixed_u16_names(r: _Reader) -> list[str]:
    items = r.vector(1, "versions list")
    names: list[str] = []
    while items.left:
        names.append(version_name(items.int(2, "version", "version", version_name)))
    return names


def _ext_supported_groups(r: _Reader, where: str) -> Any:
    return _u16_names(r, 2, "group", group_name, "group")


def _ext_signature_algorithms(r: _Reader, where: str) -> Any:
    return _u16_names(r, 2, "signature scheme", signature_scheme_name, "ext-data")


def _key_share_entry(r: _Reader) -> KeyShareEntry:
    group = r.int(2, "key share group", "group", group_name)
    key = r.opaque(2, "public key", "key")
    return KeyShareEntry(group, key)


def _ext_key_share(r: _Reader, where: str) -> Any:
    if where == "client_hello":
        shares = r.vector(2, "key shares")
        entries: list[KeyShareEntry] = []
        while shares.left:
            entries.append(_key_share_entry(shares))
        return entries
    if where == "hello_retry_request":  # only the group the server wants a share for
        return group_name(r.int(2, "selected group", "group", group_name))
    return _key_share_entry(r)


def _ext_psk_modes(r: _Reader, where: str) -> Any:
    return _u8_names(r, "mode", PSK_KEY_EXCHANGE_MODES)


def _ext_pre_shared_key(r: _Reader, where: str) -> Any:
    if where != "client_hello":
        return {"selected_identity": r.int(2, "selected identity", "ext-data")}
    ids = r.vector(2, "identities")
    identities: list[PskIdentity] = []
    while ids.left:
        identity = ids.opaque(2, "identity", "ticket")
        age = ids.int(4, "obfuscated ticket age", "ext-data")
        identities.append(PskIdentity(identity, age))
    binders = r.vector(2, "binders")
    count = 0
    while binders.left:
        binders.opaque(1, "binder", "ext-data")
        count += 1
    return {"identities": identities, "binders": count}


def _ext_ec_point_formats(r: _Reader, where: str) -> Any:
    return _u8_names(r, "point format", EC_POINT_FORMATS)


def _ext_flag(r: _Reader, where: str) -> Any:
    return True  # empty: its presence is the message (extended_master_secret, encrypt_then_mac, …)


def _ext_opaque(r: _Reader, where: str) -> Any:
    return r.rest("data", "ext-data") if r.left else True


def _ext_renegotiation_info(r: _Reader, where: str) -> Any:
    return r.opaque(1, "renegotiated connection", "ext-data") or True


def _ext_status_request(r: _Reader, where: str) -> Any:
    if not r.left:
        return True
    if where == "certificate":  # TLS 1.3: the stapled OCSP response itself
        kind = r.int(1, "status type", "ext-data", lambda v: "ocsp" if v == 1 else str(v))
        response = r.bytes(r.int(3, "OCSP response length", "length"), "OCSP response", "ext-data")
        return {"type": "ocsp" if kind == 1 else kind, "response": response}
    kind = r.int(1, "status type", "ext-data", lambda v: "ocsp" if v == 1 else str(v))
    r.opaque(2, "responder ids", "ext-data")
    r.opaque(2, "request extensions", "ext-data")
    return "ocsp" if kind == 1 else f"type {kind}"


def _ext_record_size_limit(r: _Reader, where: str) -> Any:
    return r.int(2, "record size limit", "ext-data")


def _ext_padding(r: _Reader, where: str) -> Any:
    n = r.left
    r.rest("padding", "padding", f"{n} zero bytes")
    return f"{n} bytes"


def _ext_cookie(r: _Reader, where: str) -> Any:
    return r.opaque(2, "cookie", "ext-data")


def _ext_max_fragment_length(r: _Reader, where: str) -> Any:
    code = r.int(1, "max fragment length", "ext-data", lambda v: f"2^{8 + v}" if 1 <= v <= 4 else str(v))
    return 2 ** (8 + code) if 1 <= code <= 4 else code


def _ext_compress_certificate(r: _Reader, where: str) -> Any:
    items = r.vector(1, "algorithms")
    names: list[str] = []
    while items.left:
        names.append(_named(CERTIFICATE_COMPRESSION, items.int(2, "algorithm", "ext-data", lambda v: _named(CERTIFICATE_COMPRESSION, v))))
    return names


def _ext_early_data(r: _Reader, where: str) -> Any:
    if where == "new_session_ticket":
        return {"max_early_data_size": r.int(4, "max early data size", "ext-data")}
    return True


def _ext_certificate_authorities(r: _Reader, where: str) -> Any:
    names = r.vector(2, "authorities")
    count = 0
    while names.left:
        names.opaque(2, "distinguished name", "ext-data")
        count += 1
    return f"{count} authorities"


def _ext_heartbeat(r: _Reader, where: str) -> Any:
    mode = r.int(1, "heartbeat mode", "ext-data")
    return {1: "peer_allowed_to_send", 2: "peer_not_allowed_to_send"}.get(mode, str(mode))


def _ext_sct(r: _Reader, where: str) -> Any:
    return r.rest("timestamps", "ext-data") if r.left else True


# Extension type → decoder(reader, where) where ``where`` names the message carrying it.
EXTENSION_DECODERS: dict[int, Callable[[_Reader, str], Any]] = {
    0: _ext_server_name,
    1: _ext_max_fragment_length,
    5: _ext_status_request,
    10: _ext_supported_groups,
    11: _ext_ec_point_formats,
    13: _ext_signature_algorithms,
    15: _ext_heartbeat,
    16: _ext_alpn,
    18: _ext_sct,
    21: _ext_padding,
    22: _ext_flag,
    23: _ext_flag,
    27: _ext_compress_certificate,
    28: _ext_record_size_limit,
    35: _ext_opaque,
    41: _ext_pre_shared_key,
    42: _ext_early_data,
    43: _ext_supported_versions,
    44: _ext_cookie,
    45: _ext_psk_modes,
    47: _ext_certificate_authorities,
    49: _ext_flag,
    50: _ext_signature_algorithms,
    51: _ext_key_share,
    65281: _ext_renegotiation_info,
}


def _extensions(r: _Reader, where: str, ctx: "_Context") -> list[Extension]:
    """The extensions block: a 2-byte total length, then type, length, data for each."""
    if not r.left and where in ("client_hello", "server_hello"):
        return []  # TLS 1.2 and older may end the hello without an extensions block
    block = r.vector(2, "extensions")
    found: list[Extension] = []
    while block.left:
        ext_type = block.int(2, "extension type", "extension", extension_name)
        body = block.vector(2, f"extension {extension_name(ext_type)}")
        value: Any = None
        problem = None
        decoder = EXTENSION_DECODERS.get(ext_type, _ext_opaque)
        mark = len(body.spans) if body.spans is not None else 0
        try:
            value = decoder(body, where)
            body.done()
        except RecordError as exc:
            if not ctx.lenient:
                raise
            problem = str(exc)
            if body.spans is not None:  # keep one span for the whole malformed body
                del body.spans[mark:]
                body.pos = 0
                if body.data:
                    body.rest("malformed data", "ext-data")
        found.append(Extension(ext_type, body.data, value, problem))
    return found


# --- handshake messages ---------------------------------------------------------------------


class _Context:
    """What the parser knows about the connection so far (version, key exchange)."""

    def __init__(self, tls13: bool | None = None, key_exchange: str | None = None, lenient: bool = False) -> None:
        self.tls13 = tls13
        self.key_exchange = key_exchange
        self.lenient = lenient


def _ext_lookup(extensions: Sequence[Extension], name: str) -> Extension | None:
    return next((e for e in extensions if e.name == name), None)


@dataclass(eq=False, repr=False)
class HandshakeMessage:
    """A handshake message: 1-byte type, 3-byte length, body.

    ``raw`` is the whole message (header and body), which is what the transcript hash covers.
    ``spans`` are relative to ``raw``; :meth:`stream_spans` places them in the captured stream
    (a message may spill over several records, so one field can sit in two places).
    """

    msg_type: int
    raw: bytes
    spans: list[Span] = field(default_factory=list)
    direction: str | None = None
    problem: str | None = None
    _segments: "_SegmentMap | None" = field(default=None, compare=False)
    _at: int = 0  # where the message starts in its reassembled handshake stream

    @property
    def name(self) -> str:
        """``ClientHello``, ``Finished``, …: each subclass names itself; others from their type."""
        if self.msg_type in HANDSHAKE_TYPES:
            return "".join(word.capitalize() for word in HANDSHAKE_TYPES[self.msg_type].split("_"))
        return f"HandshakeMessage{self.msg_type}"

    @property
    def type_name(self) -> str:
        return handshake_type_name(self.msg_type)

    @property
    def body(self) -> bytes:
        return self.raw[4:]

    @property
    def length(self) -> int:
        return len(self.raw)

    @property
    def offset(self) -> int | None:
        """Where the message's first byte sits in the captured stream (None if not from one)."""
        if self._segments is None:
            return None
        pieces = self._segments.map(self._at, self._at + 1)
        return pieces[0][0] if pieces else None

    def stream_spans(self) -> list[Span]:
        """The spans placed in the captured stream's coordinates (split where records cut)."""
        if self._segments is None:
            return list(self.spans)
        out: list[Span] = []
        for s in self.spans:
            for start, end in self._segments.map(self._at + s.start, self._at + s.end):
                out.append(Span(start, end, s.label, s.kind, s.note))
        return out

    def summary(self) -> str:
        """The message in a few words (overridden by each kind of message)."""
        return ""

    def hex_view(self, max_bytes: int = 4096) -> "HexView":
        return HexView(self.raw, self.spans, title=f"{self.name} ({self.length} bytes)", max_bytes=max_bytes)

    def _repr_html_(self) -> str:
        return self.hex_view()._repr_html_()

    def __repr__(self) -> str:
        arrow = {"client": "client → ", "server": "server → "}.get(self.direction or "", "")
        text = self.summary()
        problem = f" [malformed: {self.problem}]" if self.problem else ""
        return f"<{arrow}{self.name} {self.length} bytes{': ' + text if text else ''}{problem}>"


@dataclass(eq=False, repr=False)
class ClientHello(HandshakeMessage):
    """The client's opening: what it can do (suites, groups, versions) and what it wants (SNI, ALPN)."""

    legacy_version: int = 0
    random: bytes = b""
    session_id: bytes = b""
    cipher_suites: list[int] = field(default_factory=list)
    compression_methods: list[int] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)

    name = "ClientHello"

    def extension(self, name: str) -> Extension | None:
        """The extension called ``name`` (e.g. ``"key_share"``), or None."""
        return _ext_lookup(self.extensions, name)

    @property
    def extension_names(self) -> list[str]:
        return [e.name for e in self.extensions]

    @property
    def cipher_suite_names(self) -> list[str]:
        return [cipher_suite_name(c) for c in self.cipher_suites]

    @property
    def server_name(self) -> str | None:
        ext = self.extension("server_name")
        return ext.value if ext is not None and isinstance(ext.value, str) else None

    @property
    def alpn(self) -> list[str]:
        ext = self.extension("application_layer_protocol_negotiation")
        return list(ext.value) if ext is not None and isinstance(ext.value, list) else []

    @property
    def supported_versions(self) -> list[str]:
        ext = self.extension("supported_versions")
        return list(ext.value) if ext is not None and isinstance(ext.value, list) else [version_name(self.legacy_version)]

    @property
    def key_shares(self) -> list[KeyShareEntry]:
        ext = self.extension("key_share")
        return list(ext.value) if ext is not None and isinstance(ext.value, list) else []

    def summary(self) -> str:
        parts = []
        if self.server_name:
            parts.append(f"SNI {self.server_name!r}")
        parts.append(f"{len(self.cipher_suites)} cipher suites")
        parts.append(f"{len(self.extensions)} extensions")
        if self.alpn:
            parts.append(f"ALPN {', '.join(self.alpn)}")
        return ", ".join(parts)


@dataclass(eq=False, repr=False)
class ServerHello(HandshakeMessage):
    """The server's choice: version, cipher suite, and (TLS 1.3) its key share."""

    legacy_version: int = 0
    random: bytes = b""
    session_id: bytes = b""
    cipher_suite: int = 0
    compression_method: int = 0
    extensions: list[Extension] = field(default_factory=list)

    name = "ServerHello"

    def extension(self, name: str) -> Extension | None:
        return _ext_lookup(self.extensions, name)

    @property
    def extension_names(self) -> list[str]:
        return [e.name for e in self.extensions]

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM

    @property
    def version(self) -> str:
        """The negotiated version: ``supported_versions`` if present (TLS 1.3), else the legacy field."""
        ext = self.extension("supported_versions")
        return ext.value if ext is not None and isinstance(ext.value, str) else version_name(self.legacy_version)

    @property
    def cipher_suite_name(self) -> str:
        return cipher_suite_name(self.cipher_suite)

    @property
    def key_share(self) -> KeyShareEntry | str | None:
        ext = self.extension("key_share")
        return ext.value if ext is not None else None

    @property
    def downgrade_sentinel(self) -> str | None:
        """Set when a TLS 1.3 server says it was made to negotiate an older version."""
        return DOWNGRADE_SENTINELS.get(self.random[-8:])

    def summary(self) -> str:
        parts = [self.version, self.cipher_suite_name]
        share = self.key_share
        if isinstance(share, KeyShareEntry):
            parts.append(share.group_name)
        elif isinstance(share, str):
            parts.append(f"asks for a {share} key share")
        return ", ".join(parts)


@dataclass(eq=False, repr=False)
class HelloRetryRequest(ServerHello):
    """A ServerHello with the special random: "send me your ClientHello again, with this group"."""

    name = "HelloRetryRequest"


@dataclass(eq=False, repr=False)
class EncryptedExtensions(HandshakeMessage):
    """TLS 1.3: the server's extensions that need not be in the clear (ALPN, SNI ack, …)."""

    extensions: list[Extension] = field(default_factory=list)

    name = "EncryptedExtensions"

    def extension(self, name: str) -> Extension | None:
        return _ext_lookup(self.extensions, name)

    def summary(self) -> str:
        return ", ".join(e.name for e in self.extensions) or "no extensions"


@dataclass(frozen=True, repr=False)
class CertificateEntry:
    """One certificate of a chain (DER), with its TLS 1.3 extensions."""

    der: bytes
    extensions: tuple[Extension, ...] = ()

    @property
    def subject(self) -> str:
        """The certificate's subject, or a note when the DER does not parse."""
        try:
            from cryptography import x509

            return x509.load_der_x509_certificate(self.der).subject.rfc4514_string()
        except Exception:  # a fuzzed or cut certificate: say so, never raise from a property
            return f"(not a parsable certificate, {len(self.der)} bytes)"

    def __repr__(self) -> str:
        return f"CertificateEntry({len(self.der)} bytes)"


@dataclass(eq=False, repr=False)
class Certificate(HandshakeMessage):
    """A certificate chain, leaf first. TLS 1.3 adds a request context and per-certificate extensions."""

    request_context: bytes | None = None
    certificates: list[CertificateEntry] = field(default_factory=list)

    name = "Certificate"

    @property
    def subjects(self) -> list[str]:
        return [c.subject for c in self.certificates]

    def summary(self) -> str:
        n = len(self.certificates)
        return f"{n} certificate{'s' if n != 1 else ''}" + (f", leaf {self.certificates[0].subject}" if n else "")


@dataclass(eq=False, repr=False)
class CertificateRequest(HandshakeMessage):
    """The server asks for a client certificate (mutual TLS)."""

    request_context: bytes | None = None
    extensions: list[Extension] = field(default_factory=list)
    certificate_types: list[str] = field(default_factory=list)
    signature_algorithms: list[str] = field(default_factory=list)
    authorities: int = 0

    name = "CertificateRequest"

    def summary(self) -> str:
        if self.extensions:
            return ", ".join(e.name for e in self.extensions)
        return f"types {', '.join(self.certificate_types)}; {self.authorities} acceptable CAs"


@dataclass(eq=False, repr=False)
class CertificateVerify(HandshakeMessage):
    """A signature over the transcript with the certificate's key: proof of owning that key."""

    signature_scheme: int = 0
    signature: bytes = b""

    name = "CertificateVerify"

    @property
    def signature_scheme_name(self) -> str:
        return signature_scheme_name(self.signature_scheme)

    def summary(self) -> str:
        return f"{self.signature_scheme_name}, {len(self.signature)}-byte signature"


@dataclass(eq=False, repr=False)
class Finished(HandshakeMessage):
    """An HMAC (TLS 1.3) or PRF output (TLS 1.2) over the whole handshake: nothing was tampered with."""

    verify_data: bytes = b""

    name = "Finished"

    def summary(self) -> str:
        return f"verify_data {len(self.verify_data)} bytes"


@dataclass(eq=False, repr=False)
class NewSessionTicket(HandshakeMessage):
    """A ticket the client may present later to resume without a full handshake."""

    lifetime: int = 0
    age_add: int | None = None
    nonce: bytes | None = None
    ticket: bytes = b""
    extensions: list[Extension] = field(default_factory=list)

    name = "NewSessionTicket"

    def summary(self) -> str:
        return f"lifetime {self.lifetime} s, ticket {len(self.ticket)} bytes"


@dataclass(eq=False, repr=False)
class ServerKeyExchange(HandshakeMessage):
    """TLS 1.2 (EC)DHE: the server's ephemeral public key, signed with its certificate's key."""

    group: int | None = None
    public_key: bytes = b""
    signature_scheme: int | None = None
    signature: bytes = b""

    name = "ServerKeyExchange"

    def summary(self) -> str:
        parts = []
        if self.group is not None:
            parts.append(group_name(self.group))
        elif self.public_key:
            parts.append("finite-field DH")
        if self.public_key:
            parts.append(f"{len(self.public_key)}-byte public key")
        if self.signature_scheme is not None:
            parts.append(f"signed {signature_scheme_name(self.signature_scheme)}")
        return ", ".join(parts)


@dataclass(eq=False, repr=False)
class ClientKeyExchange(HandshakeMessage):
    """TLS 1.2: the client's ephemeral public key (ECDHE/DHE) or the RSA-encrypted premaster secret."""

    key_exchange: str = "unknown"
    public_key: bytes = b""
    encrypted_premaster: bytes = b""

    name = "ClientKeyExchange"

    def summary(self) -> str:
        if self.encrypted_premaster:
            return f"RSA-encrypted premaster secret, {len(self.encrypted_premaster)} bytes"
        return f"{self.key_exchange} public key, {len(self.public_key)} bytes"


@dataclass(eq=False, repr=False)
class ServerHelloDone(HandshakeMessage):
    """TLS 1.2: the server's first flight is over; the client's turn."""

    name = "ServerHelloDone"


@dataclass(eq=False, repr=False)
class KeyUpdate(HandshakeMessage):
    """TLS 1.3: the sender switches to the next traffic secret."""

    update_requested: bool = False

    name = "KeyUpdate"

    def summary(self) -> str:
        return "peer asked to update too" if self.update_requested else "update_not_requested"


@dataclass(eq=False, repr=False)
class EndOfEarlyData(HandshakeMessage):
    """TLS 1.3: the client's 0-RTT data ends here."""

    name = "EndOfEarlyData"


def _parse_client_hello(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["legacy_version"] = r.int(2, "legacy version", "version", version_name)
    out["random"] = r.bytes(32, "random", "random")
    out["session_id"] = r.opaque(1, "session id", "session")
    suites = r.vector(2, "cipher suites")
    out["cipher_suites"] = []
    while suites.left:
        out["cipher_suites"].append(suites.int(2, "cipher suite", "suite", cipher_suite_name))
    methods = r.vector(1, "compression methods")
    out["compression_methods"] = []
    while methods.left:
        out["compression_methods"].append(methods.int(1, "compression method", "field", lambda v: "null" if v == 0 else str(v)))
    out["extensions"] = _extensions(r, "client_hello", ctx)
    return out


def _parse_server_hello(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["legacy_version"] = r.int(2, "legacy version", "version", version_name)
    random_start = r.pos
    out["random"] = r.bytes(32, "random", "random")
    if out["random"] == HELLO_RETRY_REQUEST_RANDOM and r.spans:
        r.spans[-1] = Span(r.base + random_start, r.base + r.pos, "random", "random", "HelloRetryRequest marker")
    out["session_id"] = r.opaque(1, "session id", "session")
    out["cipher_suite"] = r.int(2, "cipher suite", "suite", cipher_suite_name)
    out["compression_method"] = r.int(1, "compression method", "field", lambda v: "null" if v == 0 else str(v))
    where = "hello_retry_request" if out["random"] == HELLO_RETRY_REQUEST_RANDOM else "server_hello"
    out["extensions"] = _extensions(r, where, ctx)
    return out


def _parse_encrypted_extensions(r: _Reader, ctx: _Context) -> dict[str, Any]:
    return {"extensions": _extensions(r, "encrypted_extensions", ctx)}


def _parse_certificate(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {"certificates": []}
    tls13 = ctx.tls13
    if tls13 is None:  # guess: in TLS 1.3 a 1-byte (empty) context comes before the 3-byte list length
        tls13 = r.left >= 4 and r.data[r.pos] == 0 and int.from_bytes(r.data[r.pos + 1 : r.pos + 4], "big") == r.left - 4
    if tls13:
        out["request_context"] = r.opaque(1, "request context", "field")
    n = r.int(3, "certificate list length", "length", _size)
    start = r.pos
    if n > r.left:
        raise RecordError(f"{r.what} is truncated: the certificate list declares {n} bytes, only {r.left} remain")
    entries = _Reader(r.data[start : start + n], f"{r.what}: certificate list", r.spans, r.base + start)
    r.pos += n
    index = 0
    while entries.left:
        index += 1
        length = entries.int(3, f"certificate {index} length", "length", _size)
        der = entries.bytes(length, f"certificate {index} (DER)", "cert", f"{length} bytes of X.509")
        exts: list[Extension] = []
        if tls13:
            exts = _extensions(entries, "certificate", ctx)
        out["certificates"].append(CertificateEntry(der, tuple(exts)))
    return out


def _parse_certificate_request(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ctx.tls13 or (ctx.tls13 is None and r.left and r.data[r.pos] == 0):
        out["request_context"] = r.opaque(1, "request context", "field")
        out["extensions"] = _extensions(r, "certificate_request", ctx)
        return out
    out["certificate_types"] = _u8_names(r, "certificate type", CERTIFICATE_TYPES)
    out["signature_algorithms"] = _u16_names(r, 2, "signature scheme", signature_scheme_name, "field")
    names = r.vector(2, "acceptable CAs")
    count = 0
    while names.left:
        names.opaque(2, "distinguished name", "field")
        count += 1
    out["authorities"] = count
    return out


def _parse_certificate_verify(r: _Reader, ctx: _Context) -> dict[str, Any]:
    scheme = r.int(2, "signature scheme", "suite", signature_scheme_name)
    return {"signature_scheme": scheme, "signature": r.opaque(2, "signature", "signature")}


def _parse_finished(r: _Reader, ctx: _Context) -> dict[str, Any]:
    return {"verify_data": r.rest("verify data", "finished")}


def _parse_new_session_ticket(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {"lifetime": r.int(4, "ticket lifetime", "field", lambda v: f"{v} s")}
    tls13 = ctx.tls13
    if tls13 is None:  # TLS 1.2: lifetime, then a 2-byte ticket length that ends the body exactly
        tls13 = not (r.left >= 2 and int.from_bytes(r.data[r.pos : r.pos + 2], "big") == r.left - 2)
    if tls13:
        out["age_add"] = r.int(4, "ticket age add", "field")
        out["nonce"] = r.opaque(1, "ticket nonce", "field")
        out["ticket"] = r.opaque(2, "ticket", "ticket")
        out["extensions"] = _extensions(r, "new_session_ticket", ctx)
    else:
        out["ticket"] = r.opaque(2, "ticket", "ticket")
    return out


def _signature(r: _Reader, out: dict[str, Any]) -> None:
    if r.left:  # anonymous suites have no signature
        out["signature_scheme"] = r.int(2, "signature scheme", "suite", signature_scheme_name)
        out["signature"] = r.opaque(2, "signature", "signature")


def _parse_server_key_exchange(r: _Reader, ctx: _Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kx = ctx.key_exchange
    if kx is None:  # guess: ECDHE parameters start with curve type 3 (named_curve)
        kx = "ECDHE" if r.left and r.data[r.pos] == 3 else "DHE"
    if kx == "ECDHE":
        r.int(1, "curve type", "field", lambda v: "named_curve" if v == 3 else str(v))
        out["group"] = r.int(2, "named group", "group", group_name)
        out["public_key"] = r.opaque(1, "public key", "key")
    elif kx == "DHE":
        r.opaque(2, "DH prime p", "field")
        r.opaque(2, "DH generator g", "field")
        out["public_key"] = r.opaque(2, "public key", "key")
    else:
        r.rest("parameters", "field")
        return out
    _signature(r, out)
    return out


def _parse_client_key_exchange(r: _Reader, ctx: _Context) -> dict[str, Any]:
    kx = ctx.key_exchange
    if kx is None:  # guess from the shape: a 1-byte length (ECDHE) or a 2-byte one (RSA, DHE)
        kx = "ECDHE" if r.left and r.data[r.pos] == r.left - 1 else "RSA"
    if kx == "ECDHE":
        return {"key_exchange": "ECDHE", "public_key": r.opaque(1, "public key", "key")}
    if kx == "DHE":
        return {"key_exchange": "DHE", "public_key": r.opaque(2, "public key", "key")}
    if kx == "RSA":
        return {"key_exchange": "RSA", "encrypted_premaster": r.opaque(2, "encrypted premaster secret", "key")}
    r.rest("exchange keys", "key")
    return {"key_exchange": kx}


def _parse_key_update(r: _Reader, ctx: _Context) -> dict[str, Any]:
    flag = r.int(1, "request update", "field", lambda v: "update_requested" if v == 1 else "update_not_requested")
    return {"update_requested": flag == 1}


def _parse_empty(r: _Reader, ctx: _Context) -> dict[str, Any]:
    return {}


# Handshake type → (class, body parser).
MESSAGE_PARSERS: dict[int, tuple[type[HandshakeMessage], Callable[[_Reader, _Context], dict[str, Any]]]] = {
    1: (ClientHello, _parse_client_hello),
    2: (ServerHello, _parse_server_hello),
    4: (NewSessionTicket, _parse_new_session_ticket),
    5: (EndOfEarlyData, _parse_empty),
    8: (EncryptedExtensions, _parse_encrypted_extensions),
    11: (Certificate, _parse_certificate),
    12: (ServerKeyExchange, _parse_server_key_exchange),
    13: (CertificateRequest, _parse_certificate_request),
    14: (ServerHelloDone, _parse_empty),
    15: (CertificateVerify, _parse_certificate_verify),
    16: (ClientKeyExchange, _parse_client_key_exchange),
    20: (Finished, _parse_finished),
    24: (KeyUpdate, _parse_key_update),
}


def _parse_message(raw: bytes, ctx: _Context) -> HandshakeMessage:
    """One complete message (header + body) → the right :class:`HandshakeMessage` subclass."""
    spans: list[Span] = []
    r = _Reader(raw, "handshake message", spans)
    msg_type = r.int(1, "handshake type", "handshake", lambda v: handshake_type_name(v))
    length = r.int(3, "handshake length", "handshake", _size)
    if length != r.left:  # the caller cut raw by this very length
        raise RecordError(f"handshake message length {length} does not match its {r.left} bytes")
    cls, parser = MESSAGE_PARSERS.get(msg_type, (HandshakeMessage, None))  # type: ignore[assignment]
    name = cls.name if parser else f"handshake message {handshake_type_name(msg_type)}"  # type: ignore[attr-defined]
    r.what = name
    header = list(spans)
    try:
        fields = parser(r, ctx) if parser else {}
        if parser is None:
            r.rest("body", "field")
        r.done()
    except RecordError as exc:
        if not ctx.lenient:
            raise RecordError(f"{name}: {exc}" if not str(exc).startswith(name) else str(exc)) from None
        body_spans = [*header]
        if len(raw) > 4:
            body_spans.append(Span(4, len(raw), "malformed body", "field", _hex_preview(raw[4:])))
        return HandshakeMessage(msg_type, raw, body_spans, problem=str(exc))
    if cls is ServerHello and fields.get("random") == HELLO_RETRY_REQUEST_RANDOM:
        cls = HelloRetryRequest
    return cls(msg_type, raw, spans, **fields)  # type: ignore[arg-type]


# --- the record layer -----------------------------------------------------------------------


class _SegmentMap:
    """Maps positions in a reassembled handshake stream back to positions in the captured stream."""

    def __init__(self) -> None:
        self.starts: list[int] = []  # handshake-stream position where each segment starts
        self.pieces: list[tuple[int, int, int]] = []  # (handshake start, stream start, length)

    def add(self, hs_start: int, stream_start: int, length: int) -> None:
        if length:
            self.starts.append(hs_start)
            self.pieces.append((hs_start, stream_start, length))

    def map(self, start: int, end: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while start < end and i < len(self.pieces):
            hs, st, n = self.pieces[i]
            if start < hs + n:
                stop = min(end, hs + n)
                out.append((st + start - hs, st + stop - hs))
                start = stop
            i += 1
        return out


@dataclass(eq=False)
class ChangeCipherSpec:
    """The one-byte ChangeCipherSpec message: "from here on, I encrypt" (a no-op in TLS 1.3)."""

    value: int
    offset: int
    direction: str | None = None

    name = "ChangeCipherSpec"

    def __repr__(self) -> str:
        arrow = f"{self.direction} → " if self.direction else ""
        return f"<{arrow}ChangeCipherSpec>"


@dataclass(eq=False)
class Alert:
    """An alert: a level (warning or fatal) and a description such as ``bad_record_mac``."""

    level: int
    description: int
    offset: int | None = None
    direction: str | None = None

    name = "Alert"

    @property
    def level_name(self) -> str:
        return _named(ALERT_LEVELS, self.level, 2)

    @property
    def description_name(self) -> str:
        return alert_name(self.description)

    def __repr__(self) -> str:
        arrow = f"{self.direction} → " if self.direction else ""
        return f"<{arrow}Alert {self.level_name} {self.description_name}>"


Item = Union[HandshakeMessage, ChangeCipherSpec, Alert]


@dataclass(eq=False, repr=False)
class Record:
    """One TLS record: content type, version, and the fragment it carries.

    ``items`` lists what the record carries that could be read: handshake messages (each listed
    in the record where it ends), a ChangeCipherSpec, an Alert. An ``encrypted`` record's
    fragment is ciphertext (:mod:`tlslab.decrypt` reads it, with the keys).
    """

    content_type: int
    version: int
    fragment: bytes
    offset: int = 0
    direction: str | None = None
    encrypted: bool = False
    items: list[Item] = field(default_factory=list)
    time: float | None = None

    @property
    def type_name(self) -> str:
        return _named(CONTENT_TYPES, self.content_type, 2)

    @property
    def length(self) -> int:
        return len(self.fragment)

    @property
    def end(self) -> int:
        return self.offset + 5 + len(self.fragment)

    @property
    def header(self) -> bytes:
        return bytes([self.content_type]) + self.version.to_bytes(2, "big") + len(self.fragment).to_bytes(2, "big")

    @property
    def raw(self) -> bytes:
        """Header and fragment, as on the wire (the AEAD's additional data is the header)."""
        return self.header + self.fragment

    @property
    def messages(self) -> list[HandshakeMessage]:
        return [i for i in self.items if isinstance(i, HandshakeMessage)]

    def header_spans(self) -> list[Span]:
        o = self.offset
        return [
            Span(o, o + 1, "record type", "record", f"{self.type_name} ({self.content_type})"),
            Span(o + 1, o + 3, "record version", "record", version_name(self.version)),
            Span(o + 3, o + 5, "record length", "record", _size(len(self.fragment))),
        ]

    def describe(self) -> str:
        """What the record carries, in words."""
        if self.encrypted:
            return f"encrypted {self.type_name}" if self.content_type != 23 else "encrypted data"
        if self.items:
            return ", ".join(getattr(i, "name", type(i).__name__) if not isinstance(i, Alert) else f"Alert {i.description_name}" for i in self.items)
        if self.content_type == 22:
            return "part of a handshake message"
        return self.type_name

    def __repr__(self) -> str:
        arrow = f"{self.direction} → " if self.direction else ""
        return f"<{arrow}Record {self.type_name} {version_name(self.version)} {_size(len(self.fragment))}: {self.describe()}>"


class Records(list):
    """The records of one direction, in order, as a list — plus the stream they came from.

    ``problem`` is None when every byte parsed; in lenient mode it says where parsing stopped.
    ``messages`` are the handshake messages read in the clear.
    """

    def __init__(self, records: Iterable[Record] = (), *, data: bytes = b"", direction: str | None = None, problem: str | None = None, spans: list[Span] | None = None) -> None:
        super().__init__(records)
        self.data = data
        self.direction = direction
        self.problem = problem
        self._spans = spans or []

    @property
    def messages(self) -> list[HandshakeMessage]:
        return [m for rec in self for m in rec.messages]

    @property
    def encrypted(self) -> list[Record]:
        return [rec for rec in self if rec.encrypted]

    def spans(self) -> list[Span]:
        """Every labelled span of the stream, in order."""
        return sorted(self._spans, key=lambda s: (s.start, s.end))

    def hex_view(self, start: int = 0, end: int | None = None, max_bytes: int = 4096) -> "HexView":
        """The annotated hex view of the stream (or of ``data[start:end]``)."""
        end = len(self.data) if end is None else end
        spans = [s for s in self.spans() if s.end > start and s.start < end]
        title = f"{self.direction or 'stream'}: {len(self)} records, {len(self.data)} bytes"
        return HexView(self.data, spans, start=start, end=end, title=title, max_bytes=max_bytes)

    def _repr_html_(self) -> str:
        return self.hex_view()._repr_html_()

    def __repr__(self) -> str:
        lines = [f"<Records {self.direction or 'stream'}: {len(self)} records, {len(self.data)} bytes>"]
        lines += [f"  {rec!r}" for rec in self[:50]]
        if len(self) > 50:
            lines.append(f"  … {len(self) - 50} more records")
        if self.problem:
            lines.append(f"  stopped: {self.problem}")
        return "\n".join(lines)


def _handshake_is_encrypted(after_ccs: bool, tls13: bool | None, fragment: bytes) -> bool:
    """Is this handshake record ciphertext?

    TLS 1.2 encrypts everything after ChangeCipherSpec (its Finished is the first encrypted
    handshake record). TLS 1.3's ChangeCipherSpec is only for middleboxes: its encrypted records
    all say application_data, and a client may send a second, plaintext ClientHello after it.
    When the version is unknown, a record that looks like a ClientHello is taken as plaintext.
    """
    if not after_ccs:
        return False
    if tls13 is None:
        looks_plain = len(fragment) >= 4 and fragment[0] == 1 and int.from_bytes(fragment[1:4], "big") + 4 >= len(fragment)
        return not looks_plain
    return not tls13


def parse_records(
    data: bytes,
    *,
    direction: str | None = None,
    tls13: bool | None = None,
    key_exchange: str | None = None,
    lenient: bool = False,
    times: Sequence[tuple[int, float]] | None = None,
) -> Records:
    """Cut one direction's bytes into records and read the handshake messages in the clear.

    ``direction`` (``"client"``/``"server"``) labels what is found. ``tls13`` says whether the
    connection is TLS 1.3 (None: guess), which decides whether handshake records after a
    ChangeCipherSpec are encrypted (TLS 1.2) or still plain (a TLS 1.3 client's second
    ClientHello). ``key_exchange`` (``"ECDHE"``, ``"DHE"``, ``"RSA"``) tells how to read a TLS 1.2
    ClientKeyExchange (the server's side learns it from its ServerHello; None: guess from the
    shape). ``times``: ``(offset, time)`` pairs, when the bytes came in timed chunks.
    Raises :class:`RecordError` on malformed input, unless ``lenient``, in which case the
    records read so far are returned with ``problem`` set.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_records needs bytes, not {type(data).__name__}")
    data = bytes(data)
    ctx = _Context(tls13=tls13, key_exchange=key_exchange, lenient=lenient)
    records = Records(data=data, direction=direction)
    spans = records._spans
    hs_buffer = bytearray()  # the reassembled plaintext handshake stream
    hs_map = _SegmentMap()
    hs_read = 0  # how much of hs_buffer has become messages
    after_ccs = False
    pos = 0
    time_offsets = [t[0] for t in times] if times else []

    def fail(message: str) -> Records:
        if not lenient:
            raise RecordError(message)
        records.problem = message
        return records

    while pos < len(data):
        if len(data) - pos < 5:
            return fail(f"truncated record header at offset {pos}: {len(data) - pos} of 5 bytes")
        content_type = data[pos]
        version = int.from_bytes(data[pos + 1 : pos + 3], "big")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if content_type not in CONTENT_TYPES:
            return fail(f"byte 0x{content_type:02x} at offset {pos} is not a TLS record type (20–24): is this TLS, and does the capture start at a record?")
        if version >> 8 != 3:
            return fail(f"record at offset {pos} has version 0x{version:04x}, not 3.x: this is not a TLS record")
        if length > MAX_RECORD_LENGTH:
            return fail(f"record at offset {pos} declares {length} bytes, more than TLS allows ({MAX_RECORD_LENGTH})")
        if pos + 5 + length > len(data):
            return fail(f"truncated record at offset {pos}: it declares {length} bytes but only {len(data) - pos - 5} follow")
        fragment = data[pos + 5 : pos + 5 + length]
        record = Record(content_type, version, fragment, pos, direction)
        if times:
            i = bisect.bisect_right(time_offsets, pos) - 1
            record.time = times[max(i, 0)][1]
        spans.extend(record.header_spans())
        body = pos + 5
        if content_type == 20:
            if length != 1:
                return fail(f"ChangeCipherSpec record at offset {pos} holds {length} bytes, not 1")
            record.items.append(ChangeCipherSpec(fragment[0], body, direction))
            spans.append(Span(body, body + 1, "change_cipher_spec", "ccs", str(fragment[0])))
            after_ccs = True
        elif content_type == 21 and not after_ccs and length == 2:
            level, description = fragment
            record.items.append(Alert(level, description, body, direction))
            spans.append(Span(body, body + 1, "alert level", "alert", _named(ALERT_LEVELS, level, 2)))
            spans.append(Span(body + 1, body + 2, "alert description", "alert", alert_name(description)))
        elif content_type == 22 and not _handshake_is_encrypted(after_ccs, tls13, fragment):
            if length == 0:
                return fail(f"empty handshake record at offset {pos}")
            hs_map.add(len(hs_buffer), body, length)
            hs_buffer += fragment
            # Every complete message now in the buffer is read; a partial one waits for the next record.
            while len(hs_buffer) - hs_read >= 4:
                msg_len = int.from_bytes(hs_buffer[hs_read + 1 : hs_read + 4], "big")
                if len(hs_buffer) - hs_read < 4 + msg_len:
                    break
                raw = bytes(hs_buffer[hs_read : hs_read + 4 + msg_len])
                try:
                    message = _parse_message(raw, ctx)
                except RecordError as exc:
                    return fail(f"{direction + ' ' if direction else ''}handshake message at offset {hs_map.map(hs_read, hs_read + 1)[0][0]}: {exc}")
                message.direction = direction
                message._segments = hs_map
                message._at = hs_read
                if message.problem and records.problem is None:  # lenient: say what was malformed
                    records.problem = f"{handshake_type_name(message.msg_type)} message is malformed: {message.problem}"
                if isinstance(message, HelloRetryRequest) and tls13 is None:
                    tls13 = ctx.tls13 = True  # only TLS 1.3 retries a hello
                elif isinstance(message, ServerHello):
                    ctx.tls13 = message.version == "TLS 1.3"
                    if ctx.tls13 and tls13 is None:
                        tls13 = True
                    ctx.key_exchange = _key_exchange_of(message.cipher_suite)
                spans.extend(message.stream_spans())
                record.items.append(message)
                hs_read += 4 + msg_len
        else:
            record.encrypted = content_type == 23 or after_ccs or content_type == 21
            label = "encrypted data" if record.encrypted else record.type_name
            spans.append(Span(body, body + length, label, "encrypted" if record.encrypted else "field", _size(length)))
        records.append(record)
        pos += 5 + length
    if hs_read < len(hs_buffer):
        where = hs_map.map(hs_read, hs_read + 1)[0][0]
        return fail(f"the handshake message at offset {where} is incomplete: the capture ends inside it")
    return records


def _key_exchange_of(suite: int) -> str | None:
    """ECDHE, DHE or RSA for a TLS 1.2 suite (None for TLS 1.3 suites, which leave it to key_share)."""
    name = cipher_suite_name(suite)
    if name.startswith(("TLS_ECDHE_", "TLS_ECDH_anon_")):
        return "ECDHE"
    if name.startswith(("TLS_DHE_", "TLS_DH_anon_")):
        return "DHE"
    if name.startswith("TLS_RSA_WITH_"):
        return "RSA"
    return None


def parse_messages(handshake_bytes: bytes, *, tls13: bool | None = None, key_exchange: str | None = None, lenient: bool = False) -> list[HandshakeMessage]:
    """Read a plaintext handshake stream (e.g. decrypted TLS 1.3 records, concatenated).

    Each message keeps its spans relative to itself and its offset in ``handshake_bytes``.
    An incomplete last message raises :class:`RecordError` (lenient: it is left out).
    """
    ctx = _Context(tls13=tls13, key_exchange=key_exchange, lenient=lenient)
    data = bytes(handshake_bytes)
    segments = _SegmentMap()
    segments.add(0, 0, len(data))
    messages: list[HandshakeMessage] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            if lenient:
                break
            raise RecordError(f"truncated handshake header at offset {pos}: {len(data) - pos} of 4 bytes")
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 4 + length > len(data):
            if lenient:
                break
            raise RecordError(f"truncated handshake message at offset {pos}: it declares {length} bytes but only {len(data) - pos - 4} follow")
        message = _parse_message(data[pos : pos + 4 + length], ctx)
        message._segments, message._at = segments, pos
        messages.append(message)
        pos += 4 + length
    return messages


# --- both directions: the handshake ---------------------------------------------------------

Chunks = Sequence[tuple[float, bytes]]

# How a capture may name its directions (tlslab.wire says "client→server").
_SIDES = {
    "client": "client", "c": "client", "client→server": "client", "client->server": "client",
    "server": "server", "s": "server", "server→client": "server", "server->client": "server",
}


def capture_chunks(capture: Any) -> list[tuple[str, float, bytes]]:
    """A capture's chunks as ``[("client" | "server", time, bytes), …]``, in capture order.

    ``capture``: anything with a ``chunks`` list (such as a :class:`tlslab.wire.Capture` of one
    connection), or the list itself; each chunk a ``(direction, time, bytes)`` tuple or an
    object with ``direction``, ``time`` and ``data``.
    """
    chunks = getattr(capture, "chunks", capture)
    out: list[tuple[str, float, bytes]] = []
    connections = set()
    for item in chunks:
        if isinstance(item, tuple):
            direction, when, data = item
        else:
            direction, when, data = item.direction, item.time, item.data
            connections.add(getattr(item, "connection", 0))
        side = _SIDES.get(str(direction).lower())
        if side is None:
            raise ValueError(f"a chunk's direction must be client→server or server→client, not {direction!r}")
        if data:
            out.append((side, float(when), bytes(data)))
    if len(connections) > 1:
        raise ValueError(
            f"this capture holds {len(connections)} connections; pick one first, e.g. capture.for_connection(0)"
        )
    return out


def parse_capture(capture: Any, *, lenient: bool = False) -> Handshake:
    """Parse a capture of one connection (see :func:`capture_chunks`), in the real time order."""
    chunks = capture_chunks(capture)
    return parse_handshake(
        [(t, d) for side, t, d in chunks if side == "client"],
        [(t, d) for side, t, d in chunks if side == "server"],
        lenient=lenient,
    )


def _join_chunks(side: bytes | Chunks) -> tuple[bytes, list[tuple[int, float]] | None]:
    if isinstance(side, (bytes, bytearray, memoryview)):
        return bytes(side), None
    data = bytearray()
    times: list[tuple[int, float]] = []
    for when, chunk in side:
        times.append((len(data), float(when)))
        data += chunk
    return bytes(data), times


@dataclass(eq=False, repr=False)
class Handshake:
    """Both directions of a connection, parsed: records, and the messages in the order they flowed.

    Without timestamps the order across directions is inferred from TLS's turn-taking (each
    flight ends with a message that waits for the peer); with timed chunks it is the real order.
    """

    client: Records
    server: Records
    records: list[Record]

    @property
    def messages(self) -> list[HandshakeMessage]:
        """The handshake messages read in the clear, in order."""
        return [m for rec in self.records for m in rec.messages]

    @property
    def items(self) -> list[Item | Record]:
        """Everything in order: messages, ChangeCipherSpecs, alerts, and encrypted records."""
        out: list[Item | Record] = []
        for rec in self.records:
            out.extend(rec.items if rec.items else [rec])
        return out

    def _first(self, cls: type) -> Any:
        return next((m for m in self.messages if type(m) is cls), None)

    @property
    def client_hello(self) -> ClientHello | None:
        return self._first(ClientHello)

    @property
    def server_hello(self) -> ServerHello | None:
        return self._first(ServerHello)

    @property
    def hello_retry_request(self) -> HelloRetryRequest | None:
        return self._first(HelloRetryRequest)

    @property
    def version(self) -> str | None:
        return self.server_hello.version if self.server_hello else None

    @property
    def cipher_suite(self) -> str | None:
        return self.server_hello.cipher_suite_name if self.server_hello else None

    @property
    def problem(self) -> str | None:
        return self.client.problem or self.server.problem

    def rows(self) -> list[tuple[str, str, int]]:
        """(direction, what, size in bytes) for each item: what a ladder diagram draws."""
        rows = []
        for rec in self.records:
            if rec.items:
                for item in rec.items:
                    size = item.length if isinstance(item, HandshakeMessage) else (1 if isinstance(item, ChangeCipherSpec) else 2)
                    rows.append((rec.direction or "?", _item_label(item), size))
            else:
                rows.append((rec.direction or "?", rec.describe(), rec.length))
        return rows

    def __repr__(self) -> str:
        head = f"<Handshake {self.version or '(no ServerHello)'}{' ' + self.cipher_suite if self.cipher_suite else ''}"
        lines = [head + f", {len(self.records)} records>"]
        for direction, what, size in self.rows()[:60]:
            arrow = "client → server" if direction == "client" else "server → client"
            lines.append(f"  {arrow}  {what} ({_size(size)})")
        if self.problem:
            lines.append(f"  stopped: {self.problem}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{'→' if d == 'client' else ''}</td><td>{html.escape(what)}</td>"
            f"<td>{'←' if d != 'client' else ''}</td><td style='text-align:right'>{size}</td></tr>"
            for d, what, size in self.rows()
        )
        title = html.escape(f"{self.version or ''} {self.cipher_suite or ''}".strip() or "handshake")
        return (
            f"<div class='tlslab-handshake'><b>{title}</b><table><tr><th>client</th><th>message</th>"
            f"<th>server</th><th>bytes</th></tr>{rows}</table></div>"
        )


def _item_label(item: Item) -> str:
    if isinstance(item, Alert):
        return f"Alert {item.level_name} {item.description_name}"
    if isinstance(item, HandshakeMessage):
        text = item.summary()
        return f"{item.name}" + (f" ({text})" if text else "")
    return item.name


def _ends_turn(record: Record, hash_len: int | None) -> bool:
    """Does this record end its sender's flight (the sender now waits for the peer)?"""
    for item in record.items:
        if isinstance(item, (ClientHello, HelloRetryRequest, ServerHelloDone, Finished)):
            return True
    # TLS 1.3 sends Finished encrypted; its record has a telling size: a 4-byte header, the HMAC,
    # 1 content-type byte and a 16-byte tag.
    return record.encrypted and hash_len is not None and record.length == hash_len + 21


def interleave(client: Sequence[Record], server: Sequence[Record], ends_turn: Callable[[Record], bool]) -> list[Record]:
    """Merge both directions: by time when every record has one, else by taking turns.

    Taking turns: the client speaks first; each side goes on until a record that ends its turn.
    """
    if all(r.time is not None for r in [*client, *server]):
        both = [(r.time, 0 if r.direction == "client" else 1, i, r) for i, r in enumerate([*client, *server])]
        return [r for *_, r in sorted(both, key=lambda t: (t[0], t[2]))]
    out: list[Record] = []
    queues = {"client": deque(client), "server": deque(server)}
    turn = "client"
    while queues["client"] or queues["server"]:
        if not queues[turn]:
            turn = "server" if turn == "client" else "client"
            continue
        while queues[turn]:
            record = queues[turn].popleft()
            out.append(record)
            if ends_turn(record):
                break
        turn = "server" if turn == "client" else "client"
    return out


def parse_handshake(client: bytes | Chunks, server: bytes | Chunks, *, lenient: bool = False) -> Handshake:
    """Parse both directions of a captured connection into a :class:`Handshake`.

    ``client``/``server`` are the bytes each side sent, or lists of ``(time, bytes)`` chunks (then
    the order across directions is the real one). In TLS 1.3 everything after the ServerHello is
    encrypted: those records are kept as encrypted records (see :mod:`tlslab.decrypt`).
    """
    server_data, server_times = _join_chunks(server)
    client_data, client_times = _join_chunks(client)
    server_records = parse_records(server_data, direction="server", lenient=lenient, times=server_times)
    hello = next((m for m in server_records.messages if type(m) is ServerHello), None)
    tls13 = None if hello is None else hello.version == "TLS 1.3"
    kx = None if hello is None else _key_exchange_of(hello.cipher_suite)
    client_records = parse_records(client_data, direction="client", tls13=tls13, key_exchange=kx, lenient=lenient, times=client_times)
    hash_len = None
    if hello is not None and tls13:
        hash_len = 48 if hello.cipher_suite_name.endswith("SHA384") else 32
    ordered = interleave(client_records, server_records, lambda r: _ends_turn(r, hash_len))
    return Handshake(client_records, server_records, ordered)


# --- the annotated hex view -----------------------------------------------------------------

# Colour per kind of field: similar things share a colour, so the eye finds structure.
COLOURS: dict[str, str] = {
    "record": "#d0d7de",
    "handshake": "#f4c7a1",
    "length": "#eceff1",
    "version": "#c9e4f6",
    "random": "#fde2a6",
    "session": "#e5d4f5",
    "suite": "#c8ecc9",
    "extension": "#ffd6d6",
    "ext-data": "#fff1cc",
    "sni": "#ffb3b3",
    "alpn": "#ffcfa8",
    "group": "#b9e7e0",
    "key": "#a8d8f0",
    "cert": "#e6ddc6",
    "signature": "#d9c8f0",
    "finished": "#b8e0b8",
    "ticket": "#e0e0f8",
    "padding": "#f2f2f2",
    "alert": "#ff9e9e",
    "ccs": "#cfd8dc",
    "encrypted": "#bdbdbd",
    "plaintext": "#c6f1c6",
    "field": "#f5f0e1",
}


@dataclass
class HexView:
    """Bytes shown as labelled, coloured spans; computed from :class:`Span` lists, never by hand.

    ``str(view)`` is a text version (offset, bytes, label, value per line), ``_repr_html_`` the
    coloured one, each span a box with its hex on top and its label below (hover for details).
    Long spans show their first bytes only; past ``max_bytes`` the view is cut.
    """

    data: bytes
    spans: Sequence[Span]
    start: int = 0
    end: int | None = None
    title: str = ""
    max_bytes: int = 4096
    span_bytes: int = 24  # bytes shown per span before "… n more"

    def _pieces(self) -> Iterator[tuple[int, int, Span | None]]:
        """Spans and the unlabelled gaps between them, in order, within the window."""
        end = len(self.data) if self.end is None else min(self.end, len(self.data))
        limit = min(end, self.start + self.max_bytes)
        pos = self.start
        for span in sorted(self.spans, key=lambda s: (s.start, -s.end)):
            if span.end <= pos or span.start >= limit:
                continue
            if span.start > pos:
                yield pos, span.start, None
            s = max(span.start, pos)
            e = min(span.end, limit)
            yield s, e, span
            pos = e
        if pos < limit:
            yield pos, limit, None

    def _cut(self) -> int:
        end = len(self.data) if self.end is None else min(self.end, len(self.data))
        return max(0, end - (self.start + self.max_bytes))

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        for s, e, span in self._pieces():
            shown = self.data[s : min(e, s + self.span_bytes)].hex(" ")
            more = f" …+{e - s - self.span_bytes}" if e - s > self.span_bytes else ""
            label = f"{span.label}: {span.note}" if span and span.note else (span.label if span else "")
            lines.append(f"{s:6d}  {shown}{more}  {label}")
        if self._cut():
            lines.append(f"… {self._cut()} more bytes not shown")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<HexView {self.title or ''} {len(self.spans)} spans>"

    def _repr_html_(self) -> str:
        boxes = []
        for s, e, span in self._pieces():
            raw = self.data[s : min(e, s + self.span_bytes)].hex(" ")
            more = f" …+{e - s - self.span_bytes}" if e - s > self.span_bytes else ""
            colour = COLOURS.get(span.kind, COLOURS["field"]) if span else "#ffffff"
            label = span.label if span else ""
            note = span.note if span else ""
            tip = f"{label}: {note} — offset {s}, {e - s} byte{'s' if e - s != 1 else ''}" if span else f"offset {s}, {e - s} bytes"
            caption = html.escape(label) + (f"<br><i>{html.escape(note)}</i>" if note and len(note) <= 40 else "")
            boxes.append(
                f"<span title='{html.escape(tip, quote=True)}' style='display:inline-block;vertical-align:top;"
                f"background:{colour};margin:1px;padding:1px 3px;border-radius:3px;max-width:28em'>"
                f"<code style='font-size:85%;word-break:break-all;background:none'>{html.escape(raw)}{html.escape(more)}</code>"
                f"<br><span style='font-size:70%;color:#333'>{caption}</span></span>"
            )
        cut = f"<div><i>… {self._cut()} more bytes not shown</i></div>" if self._cut() else ""
        title = f"<div><b>{html.escape(self.title)}</b></div>" if self.title else ""
        return f"<div class='tlslab-hex' style='line-height:1.2'>{title}{''.join(boxes)}{cut}</div>"
