"""The composition root: settings become objects here, and only here is an
implementation chosen for each port (stores, shared state, providers, batches);
the server, its processes and the batch worker start and stop from here."""

from .server import PointsmanServer, open_server, serve

__all__ = ["PointsmanServer", "open_server", "serve"]
