"""A TCP proxy in front of the test's PostgreSQL that a test can cut: every connection
through it is dropped and new ones refused until it is restored — a database outage as
the worker processes see it, without touching the server other tests share."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from psycopg.conninfo import conninfo_to_dict, make_conninfo


class Proxy:
    """Forwards 127.0.0.1:`port` to the server of `url` (TCP or a unix socket)."""

    def __init__(self, url: str) -> None:
        info = conninfo_to_dict(url)
        self.url = url
        self.host = str(info.get("host") or "localhost")
        self.server_port = int(info.get("port") or 5432)
        self.port = 0
        self.open = True
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def proxied_url(self) -> str:
        """`url` pointed at the proxy."""
        return make_conninfo(self.url, host="127.0.0.1", port=self.port, sslmode="disable")

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.open = False
        self._loop.call_soon_threadsafe(self._drop_all)

    def restore(self) -> None:
        """Accept connections again."""
        self.open = True

    def close(self) -> None:
        """Stop the proxy."""
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _drop_all(self) -> None:
        for writer in list(self._links):
            writer.close()
        self._links.clear()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.host}/.s.PGSQL.{self.server_port}")
        return await asyncio.open_connection(self.host, self.server_port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await self._upstream()
        self._links.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                if not self.open:
                    break
                writer.write(data)
                await writer.drain()
        writer.close()
        self._links.discard(writer)
