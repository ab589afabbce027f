"""A TCP forwarder for the node tests (tests/pipeline/netns.py): ``python forward.py
ADDRESS PORT [PORT ...]`` listens on ADDRESS at each PORT and pipes every connection
to 127.0.0.1 at the same port, until either side closes it.

The servers the tests use listen on loopback only; this makes them reachable at
the host's end of a test namespace's veth pair, and nowhere else. The server sees
a loopback client (RabbitMQ's ``guest`` user may only connect from loopback).
Plain asyncio, so that the tests need no system package such as socat.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _handler(port: int):  # a callback for asyncio.start_server
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        # When either side ends, both directions end: a server that closes the connection
        # (RabbitMQ after missed heartbeats) closes it for the client too.
        pipes = [
            asyncio.ensure_future(_pipe(client_reader, server_writer)),
            asyncio.ensure_future(_pipe(server_reader, client_writer)),
        ]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_writer, server_writer):
            writer.close()
        for pipe in pipes:
            pipe.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pipe

    return forward


async def main(address: str, ports: list[int]) -> None:
    servers = [await asyncio.start_server(_handler(port), address, port) for port in ports]
    print(f"forwarding {address} ports {' '.join(map(str, ports))} to 127.0.0.1", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(port) for port in sys.argv[2:]]))
