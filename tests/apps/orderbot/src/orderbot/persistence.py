"""How orderbot stores its checkpoints: optionally encrypted.

``encrypted_serde`` is the serializer factory an app that encrypts its
checkpoints names in its profile (``serde = "orderbot.persistence:encrypted_serde"``):
langgraph's ``EncryptedSerializer`` with AES-EAX, its key from the environment
variable ``LANGGRAPH_AES_KEY`` (16, 24 or 32 bytes). It needs ``pycryptodome``
and a langgraph-checkpoint that has ``EncryptedSerializer`` (2.0.x from early
2025 on).
"""

from typing import Any

KEY_ENV = "LANGGRAPH_AES_KEY"


def encrypted_serde() -> Any:
    """langgraph's ``EncryptedSerializer`` keyed from ``LANGGRAPH_AES_KEY``."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    return EncryptedSerializer.from_pycryptodome_aes()
