"""TLS Lab: the helper package behind the course's notebooks.

Everything a notebook needs is importable from here::

    from tlslab import CertificateAuthority, TLSServer, connect
"""

from .client import HandshakeReport, PeerCertificate, client_context, connect, send_plaintext
from .explain import Diagnosis, diagnose, diagnose_text
from .pki import CertificateAuthority, Credential, PKIError, make_csr, self_signed_cert
from .servers import ConnectionRecord, TCPServer, TLSServer, running_servers, stop_all
from .wire import Capture, Tap

__version__ = "0.1.0"

__all__ = [
    "Capture",
    "CertificateAuthority",
    "ConnectionRecord",
    "Credential",
    "Diagnosis",
    "HandshakeReport",
    "PKIError",
    "PeerCertificate",
    "TCPServer",
    "Tap",
    "TLSServer",
    "client_context",
    "connect",
    "diagnose",
    "diagnose_text",
    "make_csr",
    "running_servers",
    "self_signed_cert",
    "send_plaintext",
    "stop_all",
]
