"""WeCom's callback crypto (加解密方案, doc 91144), strict where wechatpy is lenient.

SHA1 signature over the sorted (token, timestamp, nonce, encrypt), compared in constant
time; AES-256-CBC with IV = key[:16]; PKCS#7 padding to 32-byte blocks with the pad byte
checked to lie in 1..32; plaintext = random(16) ‖ msg_len (4, big-endian) ‖ msg ‖ receive_id,
with msg_len checked against the plaintext and receive_id checked against the CorpID.
Every failure raises `CryptoError` with no detail an attacker could use as an oracle.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CryptoError(Exception):
    """Signature, padding, length or receive id did not check out."""


class SignatureError(CryptoError):
    """The msg_signature does not match."""


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """`Base64_Decode(EncodingAESKey + "=")`, which must give exactly 32 bytes."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """sha1 hex of the lexicographically sorted four strings, concatenated."""
    parts = sorted([token, timestamp, nonce, encrypt])
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Envelope:
    """An encrypted message with what the receiver needs to verify it."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    def callback_xml(self, corp_id: str, agent_id: str = "") -> str:
        """The POST body WeCom sends for a self-built app callback."""
        return (
            f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{self.encrypt}]]></Encrypt>"
            f"<AgentID><![CDATA[{agent_id}]]></AgentID></xml>"
        )

    def query(self) -> dict[str, str]:
        return {
            "msg_signature": self.msg_signature,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
        }


class WeComCrypto:
    """Encrypt, decrypt and sign for one (token, EncodingAESKey, receive id)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.receive_id = receive_id
        self._key = decode_aes_key(encoding_aes_key)
        self._cipher = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))
        self._receive_id_bytes = receive_id.encode("utf-8")

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return signature(self.token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> None:
        """Constant-time comparison of the expected and given signatures."""
        expected = self.sign(timestamp, nonce, encrypt)
        if not hmac.compare_digest(
            expected.encode("ascii"), msg_signature.encode("utf-8", "replace")
        ):
            raise SignatureError("signature mismatch")

    def encrypt(self, plaintext: bytes | str, *, random16: bytes | None = None) -> str:
        """Base64 ciphertext of `random16 ‖ len ‖ msg ‖ receive_id` (random16 fixed in tests)."""
        msg = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        prefix = os.urandom(16) if random16 is None else random16
        if len(prefix) != 16:
            raise ValueError("random prefix must be 16 bytes")
        body = prefix + struct.pack(">I", len(msg)) + msg + self._receive_id_bytes
        pad = BLOCK - len(body) % BLOCK
        body += bytes([pad]) * pad
        encryptor = self._cipher.encryptor()
        return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypt: str) -> bytes:
        """The message bytes inside `encrypt`, after every structural check."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("bad base64") from None
        if not raw or len(raw) % 16:
            raise CryptoError("bad ciphertext length")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise CryptoError("truncated plaintext")
        (length,) = struct.unpack(">I", content[:4])
        if 4 + length > len(content):
            raise CryptoError("length beyond plaintext")
        if not hmac.compare_digest(content[4 + length :], self._receive_id_bytes):
            raise CryptoError("receive id mismatch")
        return content[4 : 4 + length]

    def seal(
        self, plaintext: bytes | str, *, timestamp: str, nonce: str, random16: bytes | None = None
    ) -> Envelope:
        """Encrypt and sign, as WeCom does before it calls the bot."""
        encrypted = self.encrypt(plaintext, random16=random16)
        return Envelope(encrypted, self.sign(timestamp, nonce, encrypted), timestamp, nonce)

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bytes:
        """Verify, then decrypt."""
        self.verify(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)
