from __future__ import annotations

from bot.webhook.signature import sign, verify


def test_accepts_non_ascii_body_signed_over_raw_bytes() -> None:
    body = '{"text": "café 👍 a/b x@y"}'.encode()
    assert verify(sign("s1", body), body, ("s1",)) is True


def test_rotation_accepts_any_configured_secret() -> None:
    body = b"{}"
    assert verify(sign("old", body), body, ("new", "old")) is True
    assert verify(sign("other", body), body, ("new", "old")) is False


def test_missing_and_garbage_headers() -> None:
    assert verify(None, b"{}", ("s",)) is None
    assert verify("sha256=ñ€\udcff", b"{}", ("s",)) is False
    assert verify("md5=abc", b"{}", ("s",)) is False
