"""Outbound HTTP to addresses users give (webhooks, video URLs), guarded against SSRF."""

from detector.net.urls import (
    CheckedURL,
    UnsafeURL,
    check_url,
    guarded_request,
    is_public_address,
    read_limited,
)

__all__ = ["CheckedURL", "UnsafeURL", "check_url", "guarded_request", "is_public_address", "read_limited"]
