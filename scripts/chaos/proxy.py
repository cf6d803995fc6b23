"""TCP proxies the nemesis can cut, delay, freeze and repoint.

Run as its own process (`python3 proxy.py`), so relaying Redis traffic never
competes for the GIL with the clients and the checker. Commands arrive on
stdin, one per line, each answered by one line on stdout:

    add NAME TARGET_PORT  -> "ok LISTEN_PORT"   a new proxy to 127.0.0.1:TARGET_PORT
    pass NAME             -> "ok"   forward normally (undo cut/freeze/delay)
    cut NAME              -> "ok"   reset every connection, refuse new ones
    freeze NAME           -> "ok"   stop forwarding, keep the sockets open
    delay NAME MS         -> "ok"   deliver every chunk MS later (order kept)
    target NAME PORT      -> "ok"   repoint (a moved VIP): resets the connections
    drop NAME             -> "ok"   reset every connection, what was held is lost
    quit

A frozen link keeps its TCP connections open and silent, which is what a
stalled replication link or a half-open socket looks like to both ends.
"""

import asyncio
import sys

CHUNK = 65536


class Proxy:
    def __init__(self, name, target_port):
        self.name = name
        self.target_port = target_port
        self.cut = False
        self.delay = 0.0
        self.gate = asyncio.Event()
        self.gate.set()
        self.conns = set()
        self.server = None

    def reset_all(self):
        for w in list(self.conns):
            transport = w.transport
            if transport is not None:
                transport.abort()
        self.conns.clear()

    async def handle(self, reader, writer):
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.conns.add(writer)
        self.conns.add(up_writer)
        await asyncio.gather(
            self.pump(reader, up_writer, writer), self.pump(up_reader, writer, up_writer)
        )
        self.conns.discard(writer)
        self.conns.discard(up_writer)

    async def pump(self, src, dst, other):
        """Copies src to dst. Each chunk leaves `delay` after it arrived, by a
        writer task, so a delay adds latency without cutting throughput."""
        queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self.gate.wait()
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                await self.gate.wait()
                data = await src.read(CHUNK)
                if not data:
                    break
                await queue.put((loop.time() + self.delay, data))
            await queue.put((0, None))
            await sender
            dst.write_eof() if dst.can_write_eof() else dst.close()
        except (OSError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()
            for w in (dst, other):
                if w.transport is not None and not w.transport.is_closing():
                    w.transport.abort()


async def main():
    proxies = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(text):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        parts = line.decode().split()
        if not parts:
            continue
        cmd, args = parts[0], parts[1:]
        try:
            if cmd == "quit":
                reply("ok")
                break
            if cmd == "add":
                p = Proxy(args[0], int(args[1]))
                p.server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
                proxies[p.name] = p
                reply(f"ok {p.server.sockets[0].getsockname()[1]}")
                continue
            p = proxies[args[0]]
            if cmd == "pass":
                p.cut, p.delay = False, 0.0
                p.gate.set()
            elif cmd == "cut":
                p.cut = True
                p.gate.set()
                p.reset_all()
            elif cmd == "freeze":
                p.gate.clear()
            elif cmd == "delay":
                p.delay = int(args[1]) / 1000.0
            elif cmd == "target":
                p.target_port = int(args[1])
                p.reset_all()
            elif cmd == "drop":
                p.reset_all()
                p.gate.set()
            else:
                reply(f"error unknown command {cmd}")
                continue
            reply("ok")
        except (KeyError, IndexError, ValueError, OSError) as e:
            reply(f"error {e!r}")


if __name__ == "__main__":
    asyncio.run(main())
