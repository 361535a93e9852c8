"""When a TLS peer's certificate expires: its `notAfter`, read from the DER
bytes the TLS connection holds.

`ssl.SSLObject.getpeercert()` says nothing when the client does not verify
the peer (`verify_tls: false`), but `getpeercert(binary_form=True)` always
gives the certificate's DER. One field of it is needed, at a fixed place
(RFC 5280: Certificate > tbsCertificate > validity > notAfter), so it is
read here by walking the DER rather than by depending on a cryptography
library for the whole parse.
"""

from __future__ import annotations

import calendar
import re
import ssl

__all__ = ["not_after", "peer_expiry"]

_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT, optional
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
# RFC 5280 4.1.2.5: UTC, seconds always there, no fractions.
_UTC = re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")
_GENERALIZED = re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")


def peer_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> float | None:
    """When the peer's leaf certificate on this TLS connection expires
    (seconds since the epoch); None without TLS, without a certificate or
    when its DER cannot be read."""
    if ssl_object is None:
        return None
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):  # no handshake yet, or a closed connection
        return None
    return not_after(der) if der else None


def not_after(der: bytes) -> float | None:
    """The `notAfter` of an X.509 certificate in DER, in seconds since the
    epoch; None when `der` is not a certificate this reading understands."""
    try:
        tag, at, _ = _element(der, 0)  # Certificate
        if tag != _SEQUENCE:
            return None
        tag, at, _ = _element(der, at)  # tbsCertificate
        if tag != _SEQUENCE:
            return None
        tag, _, end = _element(der, at)
        if tag == _VERSION:
            at = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, at = _element(der, at)
        tag, at, _ = _element(der, at)  # validity
        if tag != _SEQUENCE:
            return None
        _, _, at = _element(der, at)  # notBefore
        tag, start, end = _element(der, at)  # notAfter
    except IndexError:
        return None
    return _time(tag, der[start:end])


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at `at`;
    IndexError when it runs past the end."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or at + count > len(der):
            raise IndexError("unsupported DER length")
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    end = at + length
    if end > len(der):
        raise IndexError("DER element past the end")
    return tag, at, end


def _time(tag: int, text: bytes) -> float | None:
    if tag == _UTC_TIME:
        match = _UTC.fullmatch(text)
        if match is None:
            return None
        short, *rest = (int(part) for part in match.groups())
        # RFC 5280: two-digit years 50-99 are 19xx, 00-49 are 20xx.
        year = short + (1900 if short >= 50 else 2000)
    elif tag == _GENERALIZED_TIME:
        match = _GENERALIZED.fullmatch(text)
        if match is None:
            return None
        year, *rest = (int(part) for part in match.groups())
    else:
        return None
    month, day, hour, minute, second = rest
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
