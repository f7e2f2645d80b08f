"""A loopback TCP proxy that adds latency and can reset every connection at once: the
network fault injected between the operator and the API server (TLS passes through)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from optimizer_operator.local.cluster import free_port


class FlakyProxy:
    def __init__(self, target_port: int, latency: float = 0.0) -> None:
        self.target_port = target_port
        self.latency = latency
        self.port = free_port()
        self.resets = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port)
        )
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def reset_all(self) -> int:
        """Abort every open connection (both sides see a reset); returns how many."""

        def abort() -> int:
            n = len(self._writers)
            for w in list(self._writers):
                w.transport.abort()
            return n

        n = asyncio.run_coroutine_threadsafe(_call(abort), self._loop).result(10)
        self.resets += n
        return n

    def close(self) -> None:
        self.reset_all()
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _call(fn: object) -> int:
    assert callable(fn)
    return int(fn())
