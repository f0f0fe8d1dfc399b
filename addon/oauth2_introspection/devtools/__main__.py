"""`python -m oauth2_introspection.devtools {echo,idp} [--port N] ...`"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

import yaml

from .echo import EchoServer
from .idp import IdpServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oauth2-introspection-devserver", description=__doc__)
    sub = parser.add_subparsers(dest="server", required=True)
    echo = sub.add_parser("echo", help="echo upstream")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=9000)
    idp = sub.add_parser("idp", help="development introspection endpoint")
    idp.add_argument("--host", default="127.0.0.1")
    idp.add_argument("--port", type=int, default=9001)
    idp.add_argument("--tokens", type=Path, help="YAML file: token -> claims")
    idp.add_argument("--client-auth", help="required Authorization value of callers")
    for p in (echo, idp):
        p.add_argument("-v", "--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)

    if args.server == "echo":
        server: EchoServer | IdpServer = EchoServer(args.host, args.port, verbose=args.verbose)
        what = "echo upstream"
    else:
        tokens = yaml.safe_load(args.tokens.read_text()) if args.tokens else {}
        server = IdpServer(args.host, args.port, tokens=tokens or {},
                           client_auth=args.client_auth, verbose=args.verbose)
        what = f"introspection endpoint {server.url}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"{what} listening on http://{args.host}:{server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
