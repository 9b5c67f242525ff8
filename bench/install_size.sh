#!/usr/bin/env bash
# Install size (du -sm of the venv) of an empty venv, the client and CLI alone
# (`pip install -c constraints.txt .`) and with the server extra, each installed
# from the pinned constraints as the README says. Usage: bench/install_size.sh [workdir]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
size() { du -sm "$1" | cut -f1; }
python3 -m venv "$work/empty"
echo "empty venv: $(size "$work/empty") MB"
python3 -m venv "$work/client"
"$work/client/bin/pip" install --quiet -c constraints.txt .
# The client-only install runs the CLI: no server module is needed for it.
"$work/client/bin/pointsman" --version >/dev/null
echo "client and CLI: $(size "$work/client") MB"
python3 -m venv "$work/server"
"$work/server/bin/pip" install --quiet -c constraints.txt '.[server]'
echo "with the server extra: $(size "$work/server") MB"
