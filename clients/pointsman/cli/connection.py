"""The client a command talks through, from the connection flags."""

from __future__ import annotations

import argparse
import sys

import grpc

from ..client import Client, tls_credentials


def connect(args: argparse.Namespace) -> Client:
    tls: bool | grpc.ChannelCredentials = False
    if args.tls or args.ca_file or args.client_cert:
        try:
            tls = tls_credentials(args.ca_file, args.client_cert, args.client_key)
        except (OSError, ValueError) as error:
            print(f"pointsman: TLS: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    # --timeout is the deadline of every call, a stream's too; without it, the
    # library's defaults (30 s, a stream 300 s).
    deadlines = {} if args.timeout is None else {"timeout": args.timeout, "stream_timeout": args.timeout}
    return Client(
        args.address,
        api_key=args.api_key or "",
        token=args.token or "",
        tls=tls,
        tls_server_name=args.tls_server_name or None,
        **deadlines,
    )
