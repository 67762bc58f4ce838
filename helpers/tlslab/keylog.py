"""Read NSS key log files: the secrets a TLS endpoint wrote down, so a capture can be decrypted.

Browsers, curl, ``openssl s_client -keylogfile`` and Python's ``SSLContext.keylog_filename``
all write the same format, one secret per line::

    CLIENT_RANDOM <client random, hex> <TLS 1.2 master secret, hex>
    SERVER_HANDSHAKE_TRAFFIC_SECRET <client random> <secret>     # TLS 1.3
    # comments and blank lines are ignored

The client random (32 bytes, in the ClientHello) ties each line to its connection.

    >>> log = parse_keylog(text)                         # doctest: +SKIP
    >>> secrets = log[hello.random]                      # doctest: +SKIP
    >>> secrets.server_handshake_traffic_secret.hex()    # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Mapping

__all__ = ["KEYLOG_LABELS", "KeyLog", "KeyLogError", "SessionSecrets", "parse_keylog", "read_keylog"]


class KeyLogError(ValueError):
    """A key log line that does not parse (in strict mode), or a secret that is missing."""


# NSS label → the attribute of SessionSecrets that holds it.
KEYLOG_LABELS: dict[str, str] = {
    "CLIENT_RANDOM": "master_secret",  # TLS 1.2 and older: the 48-byte master secret
    "CLIENT_EARLY_TRAFFIC_SECRET": "client_early_traffic_secret",
    "EARLY_EXPORTER_MASTER_SECRET": "early_exporter_secret",
    "EARLY_EXPORTER_SECRET": "early_exporter_secret",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": "client_handshake_traffic_secret",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": "server_handshake_traffic_secret",
    "CLIENT_TRAFFIC_SECRET_0": "client_traffic_secret_0",
    "SERVER_TRAFFIC_SECRET_0": "server_traffic_secret_0",
    "EXPORTER_SECRET": "exporter_secret",
}

_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass
class SessionSecrets:
    """Every secret logged for one connection (one client random); missing ones are None."""

    client_random: bytes
    master_secret: bytes | None = None
    client_early_traffic_secret: bytes | None = None
    early_exporter_secret: bytes | None = None
    client_handshake_traffic_secret: bytes | None = None
    server_handshake_traffic_secret: bytes | None = None
    client_traffic_secret_0: bytes | None = None
    server_traffic_secret_0: bytes | None = None
    exporter_secret: bytes | None = None

    @property
    def is_tls13(self) -> bool:
        return self.server_handshake_traffic_secret is not None or self.client_traffic_secret_0 is not None

    def present(self) -> list[str]:
        """The names of the secrets this connection has."""
        return [f.name for f in fields(self) if f.name != "client_random" and getattr(self, f.name) is not None]

    def require(self, name: str) -> bytes:
        """The secret ``name``, or a :class:`KeyLogError` saying which line is missing."""
        value = getattr(self, name, None)
        if value is None:
            label = next((k for k, v in KEYLOG_LABELS.items() if v == name), name)
            raise KeyLogError(f"the key log has no {label} line for client random {self.client_random.hex()[:16]}…")
        return value

    def __repr__(self) -> str:
        return f"<SessionSecrets {self.client_random.hex()[:16]}…: {', '.join(self.present()) or 'none'}>"


@dataclass
class KeyLog(Mapping[bytes, SessionSecrets]):
    """The parsed key log: client random → :class:`SessionSecrets`.

    ``notes`` lists the lines that were skipped (in lenient mode) and why.
    """

    sessions: dict[bytes, SessionSecrets] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, client_random: bytes) -> SessionSecrets:
        try:
            return self.sessions[bytes(client_random)]
        except KeyError:
            raise KeyLogError(
                f"the key log has no secrets for client random {bytes(client_random).hex()[:16]}… "
                f"(it holds {len(self.sessions)} connection{'s' if len(self.sessions) != 1 else ''}): "
                "was the key log written by an endpoint of this very connection?"
            ) from None

    def __contains__(self, client_random: object) -> bool:
        return isinstance(client_random, (bytes, bytearray)) and bytes(client_random) in self.sessions

    def get(self, client_random: bytes, default: SessionSecrets | None = None) -> SessionSecrets | None:  # type: ignore[override]
        return self.sessions.get(bytes(client_random), default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.sessions)

    def __len__(self) -> int:
        return len(self.sessions)

    def __repr__(self) -> str:
        skipped = f", {len(self.notes)} lines skipped" if self.notes else ""
        return f"<KeyLog {len(self.sessions)} connection{'s' if len(self.sessions) != 1 else ''}{skipped}>"


def parse_keylog(text: str | bytes, *, strict: bool = False) -> KeyLog:
    """Parse key log text. Bad lines are skipped with a note, or raise :class:`KeyLogError` if ``strict``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    log = KeyLog()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        problem = _check(line)
        if problem:
            message = f"line {number}: {problem}: {line[:60]!r}"
            if strict:
                raise KeyLogError(message)
            log.notes.append(message)
            continue
        label, random_hex, secret_hex = line.split()
        client_random = bytes.fromhex(random_hex)
        secrets = log.sessions.setdefault(client_random, SessionSecrets(client_random))
        setattr(secrets, KEYLOG_LABELS[label], bytes.fromhex(secret_hex))
    return log


def _check(line: str) -> str | None:
    """Why a line is unusable, or None."""
    parts = line.split()
    if len(parts) != 3:
        return f"expected 3 fields (label, client random, secret), found {len(parts)}"
    label, random_hex, secret_hex = parts
    if label not in KEYLOG_LABELS:
        return f"unknown label {label}"
    if len(random_hex) != 64 or not _HEX.match(random_hex):
        return "the client random is not 32 bytes of hex"
    if len(secret_hex) % 2 or not _HEX.match(secret_hex):
        return "the secret is not hex"
    size = len(secret_hex) // 2
    if label == "CLIENT_RANDOM" and size != 48:
        return f"a master secret is 48 bytes, this one is {size}"
    if label != "CLIENT_RANDOM" and size not in (32, 48, 64):
        return f"a TLS 1.3 secret is as long as its hash (32 or 48 bytes), this one is {size}"
    return None


def read_keylog(path: str | Path, *, strict: bool = False) -> KeyLog:
    """Read a key log file (see :func:`parse_keylog`)."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyLogError(f"no key log at {path}: did the endpoint run with keylog= set?") from None
    return parse_keylog(text, strict=strict)
