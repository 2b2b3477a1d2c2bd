"""A trivial HTTP/1.1 server (raw asyncio protocol on uvloop) that reads each request and answers
`{}` at once: the target for measuring the load generator's own ceiling.

    python -m benchmarks.trivial_server PORT
"""

from __future__ import annotations

import asyncio
import sys

from benchmarks.loadgen import use_uvloop

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class _Handler(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                at += 17
                stop = head.find(b"\r\n", at)
                length = int(head[at : stop if stop >= 0 else len(head)])
            need = end + 4 + length
            if len(self.buffer) < need:
                return
            del self.buffer[:need]
            assert self.transport is not None
            self.transport.write(ANSWER)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Handler, "127.0.0.1", port, backlog=1024)
    print(f"trivial server on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    use_uvloop()
    asyncio.run(serve(int(sys.argv[1])))
