"""Shared test set-up: fakes importable as `fakes.*`, and the server fixtures."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["server_fixtures", "state_fixtures"]
