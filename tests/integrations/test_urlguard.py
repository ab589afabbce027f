"""The URL guard (detector.net): address checks as pure functions, resolution through a
stand-in resolver, and requests to loopback servers only."""

from __future__ import annotations

import ipaddress
import socket

import pytest
import requests

from detector.net import UnsafeURL, check_url, guarded_request, is_public_address, read_limited
from detector.net import urls as guard
from tests.integrations.servers import answer, serve

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "198.18.0.1",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:db8::1",  # documentation
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "172.32.0.1",  # just outside 172.16/12
    "100.128.0.1",  # just outside 100.64/10
    "11.0.0.1",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)
    assert guard.blocked_reason(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert is_public_address(address), guard.blocked_reason(ipaddress.ip_address(address))


def resolver(*answers: str, calls: list[str] | None = None):
    """A stand-in for socket.getaddrinfo answering ``answers`` for any name: no DNS, no traffic."""

    def resolve(host, port, family=0, kind=0, *rest):
        if calls is not None:
            calls.append(host)
        out = []
        for a in answers:
            ip = ipaddress.ip_address(a)
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sockaddr = (a, port, 0, 0) if ip.version == 6 else (a, port)
            out.append((fam, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return resolve


def test_check_url_picks_the_resolved_public_address():
    checked = check_url("https://videos.example.com/a.mp4?x=1", resolve=resolver("93.184.215.14"))
    assert (checked.scheme, checked.host, checked.port, str(checked.ip)) == (
        "https",
        "videos.example.com",
        443,
        "93.184.215.14",
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "::ffff:192.168.0.1"])
def test_a_name_resolving_to_a_private_address_is_refused(address):
    with pytest.raises(UnsafeURL, match="only public addresses"):
        check_url("http://innocent.example.com/", resolve=resolver(address))


def test_one_private_answer_among_public_ones_is_refused():
    with pytest.raises(UnsafeURL):
        check_url("http://mixed.example.com/", resolve=resolver("8.8.8.8", "10.0.0.1"))


def test_allow_private_lets_loopback_through():
    checked = check_url("http://localhost:8080/x", allow_private=True, resolve=resolver("127.0.0.1"))
    assert str(checked.ip) == "127.0.0.1" and checked.port == 8080


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/v.mp4",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/relative/path",
        "http://",
        "http://user:pass@example.com/",
        "http://example.com:99999/",
        "",
    ],
)
def test_only_http_and_https_urls_with_a_host(url):
    with pytest.raises(UnsafeURL):
        check_url(url, resolve=resolver("8.8.8.8"))


def test_literal_ip_urls_are_checked_too():
    for url in ("http://127.0.0.1/", "http://[::1]/", "http://[::ffff:7f00:1]/", "http://2130706433/"):
        with pytest.raises(UnsafeURL):
            check_url(url)  # the real resolver: literal addresses need no DNS


def test_an_unresolvable_host_is_refused():
    def fail(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeURL, match="cannot be resolved"):
        check_url("http://nowhere.invalid/", resolve=fail)


# --- Requests, to servers on loopback. 127.0.0.2 stands for "a public server": the
# tests let exactly that address through the check, and nothing else.


@pytest.fixture
def pretend_public(monkeypatch):
    real = guard.blocked_reason

    def blocked(ip):
        return None if str(ip) == "127.0.0.2" else real(ip)

    monkeypatch.setattr(guard, "blocked_reason", blocked)


def test_loopback_is_refused_before_any_connection():
    with serve({"/": lambda h, r, n: answer(h, 200, b"ok")}) as (base, recorder):
        with pytest.raises(UnsafeURL):
            guarded_request("GET", base + "/")
        assert recorder.requests == []
        assert guarded_request("GET", base + "/", allow_private=True).status_code == 200


def test_connects_to_the_checked_address_with_the_host_name(pretend_public):
    """The name is resolved once; the connection goes to that address (no second lookup
    that a rebinding DNS server could answer differently) with the name in Host."""
    with serve({"/": lambda h, r, n: answer(h, 200, b"hello")}, host="127.0.0.2") as (base, recorder):
        port = base.rsplit(":", 1)[1]
        calls: list[str] = []
        response = guarded_request(
            "GET", f"http://videos.test:{port}/clip", resolve=resolver("127.0.0.2", calls=calls)
        )
        assert read_limited(response, 100) == b"hello"
        assert calls == ["videos.test"]
        assert recorder.requests[0].headers["Host"] == f"videos.test:{port}"
        assert recorder.requests[0].path == "/clip"


@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:{port}/secret", "http://169.254.169.254/latest/meta-data/"]
)
def test_a_redirect_to_a_private_target_is_refused(pretend_public, target):
    with serve({"/private": lambda h, r, n: answer(h, 200, b"secret")}, host="127.0.0.1") as (private, hits):
        port = private.rsplit(":", 1)[1]
        location = target.format(port=port)
        with serve({"/go": lambda h, r, n: answer(h, 302, Location=location)}, host="127.0.0.2") as (
            base,
            recorder,
        ):
            with pytest.raises(UnsafeURL, match=r"only public addresses|is a"):
                guarded_request("GET", base + "/go", max_redirects=3)
            assert len(recorder.of("/go")) == 1
        assert hits.requests == []


def test_redirects_are_followed_at_most_n_times_each_checked(pretend_public):
    routes = {
        "/a": lambda h, r, n: answer(h, 302, Location="/b"),
        "/b": lambda h, r, n: answer(h, 301, Location="/c"),
        "/c": lambda h, r, n: answer(h, 200, b"there"),
    }
    with serve(routes, host="127.0.0.2") as (base, _recorder):
        assert read_limited(guarded_request("GET", base + "/a", max_redirects=2), 10) == b"there"
        with pytest.raises(UnsafeURL, match="too many redirects"):
            guarded_request("GET", base + "/a", max_redirects=1)
        # With no redirects allowed, the redirect itself is the answer.
        assert guarded_request("GET", base + "/a").status_code == 302


def test_bodies_are_not_read_beyond_the_limit(pretend_public):
    with serve({"/big": lambda h, r, n: answer(h, 200, b"x" * 1_000_000)}, host="127.0.0.2") as (base, _):
        assert len(read_limited(guarded_request("GET", base + "/big"), 1000)) == 1000


def test_a_server_that_never_answers_times_out(pretend_public):
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        port = listener.getsockname()[1]
        with pytest.raises(requests.Timeout):
            guarded_request("GET", f"http://127.0.0.2:{port}/", timeout=(1, 0.5))
    finally:
        listener.close()
