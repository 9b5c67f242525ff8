"""Authentication, roles and tenancy: JWTs and API keys name a principal, its
organisation and its role; a per-RPC table says which role each call needs.
See docs/auth.md."""

from .access import CLOSED, METHOD_ROLES, OPEN, Access, access_for
from .accounts import DEV_USERS, Accounts
from .api_keys import API_KEY_CACHE_SECONDS, ApiKeys, ApiKeyVerifier
from .authenticator import Authenticator
from .principal import Principal
from .tokens import MIN_SECRET_BYTES, TokenVerifier, WeakSecret, check_secret, issue_token

__all__ = [
    "API_KEY_CACHE_SECONDS",
    "CLOSED",
    "DEV_USERS",
    "METHOD_ROLES",
    "MIN_SECRET_BYTES",
    "OPEN",
    "Access",
    "Accounts",
    "ApiKeyVerifier",
    "ApiKeys",
    "Authenticator",
    "Principal",
    "TokenVerifier",
    "WeakSecret",
    "access_for",
    "check_secret",
    "issue_token",
]
