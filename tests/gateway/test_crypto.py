"""Callback crypto: WeCom's published vectors, wechatpy interoperability, and strict refusals."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.work.crypto import WeChatCrypto

from bot.gateway.crypto import CryptoError, SignatureError, WeComCrypto, decode_aes_key, signature
from bot.gateway.events import TextMessage
from bot.gateway.parse import parse_event
from tests.gateway.conftest import AES_KEY, CORP_ID, RANDOM16, TOKEN

# WeCom's sample from 加解密方案说明 (developer.work.weixin.qq.com/document/path/91144, formerly
# 90968): the same token, key, CorpID and POST ship with the official WXBizMsgCrypt samples.
SAMPLE_TOKEN = "QDG6eK"
SAMPLE_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
SAMPLE_CORP_ID = "wx5823bf96d3bd56c7"
SAMPLE_POST = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
    "encrypt": (
        "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Q"
        "czcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kz"
        "Js8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1"
        "s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wL"
        "VMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1"
        "ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
    ),
}
SAMPLE_PLAINTEXT = (
    b"<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    b"<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    b"<CreateTime>1409659813</CreateTime>\n"
    b"<MsgType><![CDATA[text]]></MsgType>\n"
    b"<Content><![CDATA[hello]]></Content>\n"
    b"<MsgId>4561255354251345929</MsgId>\n"
    b"<AgentID>218</AgentID>\n"
    b"</xml>"
)
# The URL-verification sample (sVerifyMsgSig … in the official Sample files).
SAMPLE_VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "encrypt": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}
SAMPLE_ECHO = b"1616140317555161061"


@pytest.fixture
def sample() -> WeComCrypto:
    return WeComCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)


def test_official_sample_message_verifies_and_decrypts(sample: WeComCrypto) -> None:
    plaintext = sample.open(**SAMPLE_POST)
    assert plaintext == SAMPLE_PLAINTEXT
    event = parse_event(plaintext)
    assert isinstance(event, TextMessage)
    assert (event.content, event.msg_id, event.agent_id) == ("hello", "4561255354251345929", "218")


def test_official_sample_signature_is_reproduced() -> None:
    args = (SAMPLE_POST["timestamp"], SAMPLE_POST["nonce"], SAMPLE_POST["encrypt"])
    assert signature(SAMPLE_TOKEN, *args) == SAMPLE_POST["msg_signature"]


def test_official_url_verification_sample(sample: WeComCrypto) -> None:
    assert sample.open(**SAMPLE_VERIFY) == SAMPLE_ECHO


def test_official_sample_refused_for_another_corp() -> None:
    other = WeComCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, "wx0000000000000000")
    with pytest.raises(CryptoError):
        other.open(**SAMPLE_POST)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"x",
        b"a" * 10,  # 16 + 4 + 10 + 18 = 48: pad 16
        b"a" * 22,  # 16 + 4 + 22 + 18 = 60: pad 4
        b"a" * 26,  # exactly 64: a whole block of padding (32)
        "今天的群发已确认，谢谢".encode(),
        b"<xml>" + b"z" * 5000 + b"</xml>",
    ],
)
def test_round_trip(crypto: WeComCrypto, plaintext: bytes) -> None:
    envelope = crypto.seal(plaintext, timestamp="1795395600", nonce="42")
    assert crypto.open(envelope.msg_signature, "1795395600", "42", envelope.encrypt) == plaintext


def test_fixed_prefix_makes_encryption_deterministic(crypto: WeComCrypto) -> None:
    first = crypto.encrypt(b"<xml/>", random16=RANDOM16)
    assert crypto.encrypt(b"<xml/>", random16=RANDOM16) == first
    assert crypto.encrypt(b"<xml/>") != first


def test_our_envelope_decrypts_with_wechatpy(crypto: WeComCrypto) -> None:
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    plaintext = "<xml><Content><![CDATA[你好 wechatpy]]></Content></xml>"
    envelope = crypto.seal(plaintext, timestamp="1795395600", nonce="1234")
    body = envelope.callback_xml(CORP_ID)
    decrypted = theirs.decrypt_message(body, envelope.msg_signature, "1795395600", "1234")
    assert decrypted == plaintext


def test_wechatpy_envelope_decrypts_with_ours(crypto: WeComCrypto) -> None:
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    plaintext = "<xml><Content><![CDATA[来自 wechatpy]]></Content></xml>"
    reply = ET.fromstring(theirs.encrypt_message(plaintext, "5678", "1795395600"))
    fields = {child.tag: child.text or "" for child in reply}
    opened = crypto.open(
        fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"], fields["Encrypt"]
    )
    assert opened == plaintext.encode()


def test_wechatpy_agrees_on_the_official_sample() -> None:
    # Guards the cross-check itself: both implementations read WeCom's vector the same way.
    theirs = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, SAMPLE_CORP_ID)
    body = f"<xml><Encrypt><![CDATA[{SAMPLE_POST['encrypt']}]]></Encrypt></xml>"
    decrypted = theirs.decrypt_message(
        body, SAMPLE_POST["msg_signature"], SAMPLE_POST["timestamp"], SAMPLE_POST["nonce"]
    )
    assert decrypted.encode() == SAMPLE_PLAINTEXT


# --- refusals ------------------------------------------------------------------------------


def _raw_encrypt(plain: bytes) -> str:
    """AES-CBC over hand-built plaintext (already block-aligned), bypassing our padding."""
    key = decode_aes_key(AES_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def _body(msg: bytes, receive_id: bytes = CORP_ID.encode(), declared: int | None = None) -> bytes:
    length = len(msg) if declared is None else declared
    return RANDOM16 + struct.pack(">I", length) + msg + receive_id


def _padded(body: bytes, pad_value: int, pad_len: int | None = None) -> bytes:
    count = pad_len if pad_len is not None else 32 - len(body) % 32
    return body + bytes([pad_value]) * count


def test_well_formed_hand_built_message_decrypts(crypto: WeComCrypto) -> None:
    # Control for the refusals below: the same construction with correct padding works.
    body = _body(b"<xml/>")
    assert crypto.decrypt(_raw_encrypt(_padded(body, 32 - len(body) % 32))) == b"<xml/>"


@pytest.mark.parametrize("pad_value", [0, 33, 255])
def test_pad_byte_out_of_range_is_refused(crypto: WeComCrypto, pad_value: int) -> None:
    body = _body(b"<xml/>")
    with pytest.raises(CryptoError, match="padding"):
        crypto.decrypt(_raw_encrypt(_padded(body, pad_value)))


def test_inconsistent_padding_is_refused(crypto: WeComCrypto) -> None:
    body = _body(b"<xml/>")
    count = 32 - len(body) % 32
    plain = body + bytes([7]) * (count - 1) + bytes([count])
    with pytest.raises(CryptoError, match="padding"):
        crypto.decrypt(_raw_encrypt(plain))


def test_length_beyond_plaintext_is_refused(crypto: WeComCrypto) -> None:
    body = _body(b"<xml/>", declared=10_000)
    with pytest.raises(CryptoError, match="length"):
        crypto.decrypt(_raw_encrypt(_padded(body, 32 - len(body) % 32)))


def test_wrong_receive_id_is_refused(crypto: WeComCrypto) -> None:
    other = WeComCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    with pytest.raises(CryptoError, match="receive id"):
        crypto.decrypt(other.encrypt(b"<xml/>", random16=RANDOM16))


def test_tampered_ciphertext_fails_the_signature(crypto: WeComCrypto) -> None:
    envelope = crypto.seal(b"<xml><A>1</A></xml>", timestamp="1795395600", nonce="9")
    raw = bytearray(base64.b64decode(envelope.encrypt))
    raw[20] ^= 0x01
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureError):
        crypto.open(envelope.msg_signature, "1795395600", "9", tampered)


def test_tampered_last_block_fails_decryption(crypto: WeComCrypto) -> None:
    encrypted = crypto.encrypt(b"<xml><A>1</A></xml>", random16=RANDOM16)
    raw = bytearray(base64.b64decode(encrypted))
    raw[-1] ^= 0x5A
    with pytest.raises(CryptoError):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("encrypt", ["not base64!", "", base64.b64encode(b"x" * 17).decode()])
def test_garbage_is_refused(crypto: WeComCrypto, encrypt: str) -> None:
    with pytest.raises(CryptoError):
        crypto.decrypt(encrypt)


def test_wrong_token_fails_the_signature(crypto: WeComCrypto) -> None:
    envelope = WeComCrypto("another", AES_KEY, CORP_ID).seal(b"<xml/>", timestamp="1", nonce="2")
    with pytest.raises(SignatureError):
        crypto.verify(envelope.msg_signature, "1", "2", envelope.encrypt)


@pytest.mark.parametrize("key", ["short", AES_KEY + "A", "!" * 43])
def test_malformed_aes_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        decode_aes_key(key)
