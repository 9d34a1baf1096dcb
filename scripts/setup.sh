#!/usr/bin/env bash
# Create .venv (once) and install rltasks into it with CPU torch, Orion and the test tools.
# Idempotent and quick when nothing changed; every other script calls it first.
#   - torch is pinned to 2.13.0 first: a bare "torch" requirement resolves to a multi-GB CUDA
#     build. Elsewhere, point TORCH_INDEX_URL at PyTorch's CPU wheel index.
#   - orion 0.2.7 (the last release) needs pip < 26.3, setuptools < 80 (for pkg_resources,
#     without a warning on every import) and typing_extensions: pyproject.toml pins them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.rltasks-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
  "${pip[@]}" 'pip<26.3'
  "${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} 'torch==2.13.0'
  "${pip[@]}" 'setuptools<80' -e '.[test]'
  touch "$stamp"
fi
