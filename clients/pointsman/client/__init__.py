"""Thin Python clients for Pointsman, over the generated stubs."""

from .aio import AsyncClient
from .errors import FieldViolation, PointsmanError
from .options import tls_credentials
from .sync import Client

__all__ = ["AsyncClient", "Client", "FieldViolation", "PointsmanError", "tls_credentials"]
