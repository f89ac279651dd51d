"""Secrets at rest: employers' own Graph access tokens, encrypted with a key derived from JEM_SECRET_KEY.

Fernet (AES-128-CBC with an HMAC-SHA256, from the `cryptography` package) under a key derived with HKDF-SHA256
from the installation's secret: a database dump alone never reveals a token, and no crypto is written here.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_LENGTH = 32
# Changing these would make every stored token unreadable: they name this use of the secret, nothing more.
_SALT = b"jem-bot"
_INFO = b"jem-bot sender access tokens v1"


class SecretKeyError(Exception):
    """JEM_SECRET_KEY is missing, too short, or not the one the stored tokens were sealed with."""


class TokenBox:
    """Seals and opens access tokens with the installation's secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise SecretKeyError(f"JEM_SECRET_KEY must be a secret string of at least {MIN_SECRET_LENGTH} characters")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, token: str) -> bytes:
        return self._fernet.encrypt(token.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(sealed)).decode()
        except InvalidToken:
            raise SecretKeyError(
                "an employer's access token cannot be read with this JEM_SECRET_KEY (was it changed?)"
            ) from None

    def __repr__(self) -> str:  # never show the key
        return "TokenBox(…)"


def hint(token: str) -> str:
    """The last four characters, enough to tell two tokens apart; never more of a secret."""
    return f"…{token[-4:]}" if len(token) >= 12 else "…"
