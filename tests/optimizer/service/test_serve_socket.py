"""The listening socket ``tiltloop serve`` makes: its connections get TCP_NODELAY (asyncio sets
it only on sockets whose protocol says TCP; without it every response waited ~40 ms on Nagle's
algorithm and delayed ACKs)."""
from __future__ import annotations

import asyncio
import socket
import threading

from optimizer.service.serve import bind_socket


def test_accepted_connections_have_tcp_nodelay() -> None:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    # a thread of its own: another test's browser driver may keep an event loop on this one
    runner = threading.Thread(target=lambda: asyncio.run(main()))
    runner.start()
    runner.join(timeout=30)
    assert sock.proto == socket.IPPROTO_TCP
    assert seen and seen[0] != 0
