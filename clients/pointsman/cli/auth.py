"""Credentials: `token create|revoke`, `keys create|ls|revoke`, `login`, `whoami`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from pointsman.auth.v1 import auth_pb2 as pb

from .arguments import command, group, read_text
from .connection import connect
from .output import label, name, print_items, print_json, when


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    token = group(sub, "token", "bearer tokens", "token_command")
    p = command(token, "create", cmd_token_create, "sign a token locally with JWT_SECRET (env) and print it")
    p.add_argument("--email", required=True)
    p.add_argument("--org", help="organisation (default: ORG_ID, else 'default')")
    p.add_argument("--role", choices=["admin", "developer", "viewer"], default="developer")
    p.add_argument("--ttl", type=int, help="lifetime in seconds (default: JWT_TTL_SECONDS, else 3600)")
    p.add_argument("--user-id", help="the token's user id (default: derived from organisation and email)")
    p = command(
        token,
        "revoke",
        cmd_token_revoke,
        "refuse a token until it expires: your own, or as an admin any of your org's",
        [common],
    )
    p.add_argument("revoked", metavar="TOKEN", help="the token; '-' reads it from stdin (keeps it out of ps)")

    keys = group(sub, "keys", "API keys (admins)", "keys_command")
    p = command(keys, "create", cmd_keys, "create an API key and print it (shown once)", [common])
    p.add_argument("--user", help="users/{id} the key acts as (default: yourself)")
    p.add_argument("--display-name", help="a label for people")
    p.add_argument("--expires-in", type=int, help="seconds until the key stops working (default: never)")
    p = command(keys, "ls", cmd_keys, "list the organisation's keys, newest first", [common])
    p.add_argument("--user", help="only this user's keys")
    p = command(keys, "revoke", cmd_keys, "revoke a key at once, on every replica", [common])
    p.add_argument("name", help="apiKeys/{id} or {id}")

    p = command(sub, "login", cmd_login, "development mode: get a token for a seeded user", [common])
    p.add_argument("--email", required=True, help="e.g. admin@pointsman.dev, developer@..., viewer@...")
    command(sub, "whoami", cmd_whoami, "the principal the credential names", [common])


def cmd_token_create(args: argparse.Namespace) -> int:
    from .serve import sign_token  # runs the server's signer: the server's module imports it

    return sign_token(args)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    revoked = read_text(args.revoked).strip()
    with connect(args) as client:
        response = client.auth.RevokeToken(pb.RevokeTokenRequest(token=revoked))
    if args.json:
        print_json(response)
    else:
        until = response.expire_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        print(f"revoked a token of {response.principal.name}; refused until it expires at {until}Z")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    with connect(args) as client:
        response = client.auth.Login(pb.LoginRequest(email=args.email))
    print_json(response) if args.json else print(response.access_token)
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    with connect(args) as client:
        principal = client.auth.WhoAmI(pb.WhoAmIRequest()).principal
    if args.json:
        print_json(principal)
    else:
        role = label(pb.Role, principal.role, "ROLE_")
        print(f"{principal.name}\t{principal.organisation}\t{role}\t{principal.email}")
    return 0


def _key_line(key: Any) -> str:
    state = f"revoked {when(key.revoke_time)}" if key.HasField("revoke_time") else "active"
    expires = f"expires {when(key.expire_time)}" if key.HasField("expire_time") else "no expiry"
    return f"{key.name}\t{key.user}\t{key.prefix}\t{key.display_name}\t{state}\t{expires}"


def cmd_keys(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.keys_command == "create":
            request = pb.CreateApiKeyRequest(display_name=args.display_name or "")
            if args.user:
                request.user = name(args.user, "users")
            if args.expires_in is not None:
                expire = Timestamp()
                expire.FromSeconds(int(time.time()) + args.expires_in)
                request.expire_time.CopyFrom(expire)
            created = client.auth.CreateApiKey(request)
            if args.json:
                print_json(created)
            else:  # the key goes to stdout alone, so it can be captured; the rest to stderr
                print(created.key)
                print(f"{created.api_key.name}: shown once, never stored; keep it secret", file=sys.stderr)
        elif args.keys_command == "ls":
            listing = pb.ListApiKeysRequest(user=name(args.user, "users") if args.user else "")
            print_items(iter(client.auth.ListApiKeys(listing).api_keys), _key_line, args.json, "no API keys")
        else:
            revoked = client.auth.RevokeApiKey(pb.RevokeApiKeyRequest(name=name(args.name, "apiKeys"))).api_key
            print_json(revoked) if args.json else print(_key_line(revoked))
    return 0
