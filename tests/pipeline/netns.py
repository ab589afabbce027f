"""A second host on this machine, for tests: a node that shares nothing with the host
but a network link.

`network_node` makes a network namespace joined to the host by a veth pair, each
end with an address of a private /30 of 10.231.0.0/16 that no interface here uses,
and runs a forwarder (tests/pipeline/forward.py) on the host's end that pipes the
given ports to the servers on 127.0.0.1. The namespace has no other link and no
default route: whatever runs in it reaches the host's end of the pair and nothing
else, so no test traffic leaves the machine.

`Node.argv` wraps a command to run it as the node: in the namespace, in a UTS
namespace of its own with the node's host name, and in a mount namespace of its
own in which a tmpfs covers a folder of the host (the API's data), so the node
cannot see what the host keeps there. The node still sees the rest of the file
system (the code and the model's weights, as a node's image would hold them).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ``ip`` (iproute2), ``unshare`` and ``nsenter``
(util-linux); `require_namespaces` skips without them, and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.conftest import missing_tool

FORWARDER = Path(__file__).with_name("forward.py")
NETWORK = ipaddress.ip_network("10.231.0.0/16")


def require_namespaces() -> None:
    """Skip unless this process may make network, mount and UTS namespaces (root, with
    ``ip`` and ``unshare`` installed); under CI=true, fail instead."""
    if os.geteuid() != 0:
        missing_tool("the node tests need root to make network and mount namespaces")
    for tool in ("ip", "unshare", "nsenter"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            missing_tool(f"the node tests need `{tool}`, which is not installed")


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of NETWORK, picked from this process's id, that no interface here has an address in."""
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr", "show").splitlines()
        for word in line.split()[3:4]
    ]
    subnets = list(NETWORK.subnets(new_prefix=30))
    first = os.getpid() % len(subnets)
    for subnet in subnets[first:] + subnets[:first]:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise RuntimeError(f"every /30 of {NETWORK} is in use")


def via(url: str, address: str) -> str:
    """``url`` (of a server on loopback) with its host replaced by ``address``.

    Raises:
        ValueError: the URL's server is not on loopback (the forwarder only reaches loopback).
    """
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"{url}: the node tests forward servers on 127.0.0.1 only")
    netloc = parts.netloc.rsplit("@", 1)
    host_port = f"{address}:{parts.port}" if parts.port else address
    netloc[-1] = host_port
    return urlunsplit(parts._replace(netloc="@".join(netloc)))


@dataclass
class Node:
    """A network namespace with one link, to the host; see the module's docstring."""

    namespace: str  # the network namespace's name (ip netns)
    hostname: str  # the node's host name, in its own UTS namespace
    host_link: str  # the host's end of the veth pair
    host_address: str  # where the node reaches the host (the forwarded servers)
    node_address: str  # where the host reaches the node

    def argv(self, command: Sequence[str], *, hide: Path, make: Sequence[Path] = ()) -> list[str]:
        """``command`` run as the node: in its namespaces, with its host name, with a
        tmpfs over the host's folder ``hide``, after making the folders ``make``
        (in that tmpfs, say). The command is exec'd: its pid is the one started."""
        script = 'hostname "$1" && mount -t tmpfs -o mode=0700 tmpfs "$2" && shift 2 && '
        script += "".join(f'mkdir -p "{path}" && ' for path in make) + 'exec "$@"'
        return [
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "node",
            self.hostname,
            str(hide),
            *command,
        ]

    def pids(self) -> list[int]:
        """The processes in the node's network namespace."""
        return [int(pid) for pid in _ip("netns", "pids", self.namespace).split()]

    def kill(self) -> list[int]:
        """SIGKILL every process of the node, as a power cut would end them; their pids."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def cut(self) -> None:
        """Take the link down (the host's end): the node's connections go silent."""
        _ip("link", "set", self.host_link, "down")

    def reconnect(self) -> None:
        _ip("link", "set", self.host_link, "up")

    def sees(self, pid: int, path: Path) -> bool:
        """Whether ``path`` exists for the node's process ``pid`` (in its mount namespace)."""
        return os.path.lexists(f"/proc/{pid}/root{path}")

    def path(self, pid: int, path: Path) -> Path:
        """``path`` as the node's process ``pid`` sees it, reachable from the host."""
        return Path(f"/proc/{pid}/root{path}")


def _wait_for_ports(
    address: str, ports: Sequence[int], forwarder: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    for port in ports:
        while True:
            try:
                with socket.create_connection((address, port), timeout=1):
                    break
            except OSError:
                if forwarder.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the forwarder did not start: {log.read_text()}") from None
                time.sleep(0.05)


@contextlib.contextmanager
def network_node(ports: Sequence[int], log_dir: Path) -> Iterator[Node]:
    """A node (see `Node`) whose ``ports`` at its ``host_address`` lead to the servers on
    the host's 127.0.0.1; everything it made is gone afterwards (its processes killed,
    the namespace and the veth pair deleted, the forwarder stopped)."""
    tag = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    host_address, node_address = (str(address) for address in subnet.hosts())
    node = Node(
        namespace=f"det-{tag}",
        hostname=f"node-{tag}",
        host_link=f"vdh{tag}",
        host_address=host_address,
        node_address=node_address,
    )
    node_link = f"vdn{tag}"
    forwarder: subprocess.Popen[bytes] | None = None
    try:
        try:
            _ip("netns", "add", node.namespace)
        except RuntimeError as exc:
            missing_tool(f"cannot make a network namespace here: {exc}")
        _ip("link", "add", node.host_link, "type", "veth", "peer", "name", node_link)
        _ip("link", "set", node_link, "netns", node.namespace)
        _ip("addr", "add", f"{host_address}/30", "dev", node.host_link)
        _ip("link", "set", node.host_link, "up")
        inside = ("netns", "exec", node.namespace, "ip")
        _ip(*inside, "addr", "add", f"{node_address}/30", "dev", node_link)
        _ip(*inside, "link", "set", node_link, "up")
        _ip(*inside, "link", "set", "lo", "up")
        log = log_dir / f"forward-{tag}.log"
        with open(log, "wb") as out:
            forwarder = subprocess.Popen(
                [sys.executable, str(FORWARDER), host_address, *map(str, ports)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for_ports(host_address, ports, forwarder, log)
        yield node
    finally:
        with contextlib.suppress(RuntimeError):
            node.kill()
        if forwarder is not None:
            forwarder.kill()
            forwarder.wait()
        with contextlib.suppress(RuntimeError):
            _ip("netns", "delete", node.namespace)  # its end of the pair, and so the pair, go too
        with contextlib.suppress(RuntimeError):
            _ip("link", "delete", node.host_link)  # in case the namespace had not taken its end yet
