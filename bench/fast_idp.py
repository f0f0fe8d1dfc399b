"""A fast RFC 7662 introspection endpoint (and a fallback upstream) for the benchmark.

Real HTTP/1.1 on loopback with keep-alive, written on asyncio streams so that
one process answers thousands of calls per second and a slow answer (a sleep)
holds up no other connection.

    python bench/fast_idp.py --port 9001 --delay-ms 50        # introspection endpoint
    python bench/fast_idp.py --port 9000 --upstream           # plain "ok" upstream

Endpoints:
- `POST /introspect` (form `token`): every token is active (claims below),
  except tokens starting with `inactive-`. A token containing `-d<N>-` is
  answered after N ms (e.g. `w-d0-17`: at once, `slow-d3000-x`: after 3 s);
  any other token after `--delay-ms`.
- `GET /_stats`: `{"calls": N, "distinct": N, "max_per_token": N}` since start.
- `GET /_count?token=T`: calls made for token T.
- anything else: 200 `ok` (the `--upstream` mode answers that to every request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time
from urllib.parse import parse_qsl, unquote_plus

_DELAY = re.compile(r"-d(\d+)-")


class FastIdp:
    def __init__(self, delay_ms: float, upstream: bool = False) -> None:
        self.delay_ms = delay_ms
        self.upstream = upstream
        self.calls = 0
        self.per_token: dict[str, int] = {}

    def claims(self, token: str) -> dict[str, object]:
        now = int(time.time())
        return {
            "active": True,
            "username": "bench",
            "client_id": "bench-client",
            "scope": "read write",
            "sub": "bench-" + token[-8:],
            "token_type": "Bearer",
            "iss": "http://127.0.0.1/bench-idp",
            "iat": now,
            "exp": now + 3600,
        }

    async def introspect(self, body: bytes) -> bytes:
        form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        token = form.get("token", "")
        self.calls += 1
        self.per_token[token] = self.per_token.get(token, 0) + 1
        m = _DELAY.search(token)
        delay = float(m.group(1)) if m else self.delay_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if not token or token.startswith("inactive-"):
            return b'{"active":false}'
        return json.dumps(self.claims(token), separators=(",", ":")).encode()

    def stats(self, query: str) -> bytes:
        if query.startswith("token="):
            token = unquote_plus(query[len("token="):])
            return json.dumps({"calls": self.per_token.get(token, 0)}).encode()
        return json.dumps({
            "calls": self.calls,
            "distinct": len(self.per_token),
            "max_per_token": max(self.per_token.values(), default=0),
        }).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip() or 0)
                    elif name == "connection" and value.strip().lower() == "close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                path, _, query = target.partition("?")
                ctype = b"application/json"
                if self.upstream:
                    payload, ctype = b"ok\n", b"text/plain"
                elif method == "POST" and path == "/introspect":
                    payload = await self.introspect(body)
                elif path == "/_stats" or path == "/_count":
                    payload = self.stats(query)
                else:
                    payload, ctype = b"ok\n", b"text/plain"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype
                    + b"\r\nContent-Length: " + str(len(payload)).encode()
                    + (b"\r\nConnection: close" if close else b"")
                    + b"\r\n\r\n" + payload
                )
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def serve(host: str, port: int, delay_ms: float, upstream: bool) -> None:
    idp = FastIdp(delay_ms, upstream)
    server = await asyncio.start_server(idp.handle, host, port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=0.0,
                   help="answer delay for tokens without a -d<N>- tag")
    p.add_argument("--upstream", action="store_true", help="answer 200 ok to everything")
    args = p.parse_args()
    if not args.host.startswith("127.") and args.host != "::1":
        p.error("loopback addresses only")
    asyncio.run(serve(args.host, args.port, args.delay_ms, args.upstream))


if __name__ == "__main__":
    main()
