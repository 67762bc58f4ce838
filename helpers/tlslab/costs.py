"""What each key type costs: generating keys, and completing handshakes with them.

The lesson plots these; the numbers differ from machine to machine, but the ranking does not
(RSA key generation is orders of magnitude slower than ECDSA or Ed25519).
"""

from __future__ import annotations

import html
import statistics
import time
from dataclasses import dataclass, field

from .client import connect
from .pki import CertificateAuthority, generate_key
from .servers import TLSServer

__all__ = ["CostTable", "measure_costs"]

KEY_TYPES = ("ecdsa", "ed25519", "rsa2048", "rsa3072")
LABELS = {"ecdsa": "ECDSA P-256", "ed25519": "Ed25519", "rsa2048": "RSA 2048", "rsa3072": "RSA 3072"}


@dataclass
class CostTable:
    """Median milliseconds per key type, for key generation and for a full handshake."""

    keygen_ms: dict[str, float] = field(default_factory=dict)
    handshake_ms: dict[str, float] = field(default_factory=dict)

    def ratio(self, slow: str, fast: str, what: str = "keygen") -> float:
        table = self.keygen_ms if what == "keygen" else self.handshake_ms
        return table[slow] / table[fast]

    def __repr__(self) -> str:
        rows = [f"{'key':<12} {'key generation':>15} {'handshake':>10}"]
        for key in self.keygen_ms:
            rows.append(f"{LABELS[key]:<12} {self.keygen_ms[key]:>12.2f} ms {self.handshake_ms.get(key, float('nan')):>7.2f} ms")
        return "\n".join(rows)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td>{html.escape(LABELS[k])}</td><td>{self.keygen_ms[k]:.2f} ms</td>"
            f"<td>{self.handshake_ms.get(k, float('nan')):.2f} ms</td></tr>"
            for k in self.keygen_ms
        )
        return f"<table><tr><th>key</th><th>key generation</th><th>handshake</th></tr>{body}</table>"


def _median_ms(action, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def measure_costs(key_types: tuple[str, ...] = KEY_TYPES, *, keygen_runs: int = 5, handshake_runs: int = 20) -> CostTable:
    """Median key-generation and handshake times per key type, measured here and now."""
    table = CostTable()
    ca = CertificateAuthority("Cost CA")
    for key_type in key_types:
        table.keygen_ms[key_type] = _median_ms(lambda: generate_key(key_type), keygen_runs)
        credential = ca.issue_server_cert("localhost", key_type=key_type)
        with TLSServer(credential, name=f"cost-{key_type}") as server:
            connect(server, trust=ca)  # warm-up
            table.handshake_ms[key_type] = _median_ms(lambda: connect(server, trust=ca), handshake_runs)
    return table
