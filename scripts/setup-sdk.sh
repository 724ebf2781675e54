#!/usr/bin/env bash
# A virtualenv with the official OpenAI and Anthropic Python SDKs, for the compatibility
# tests (tests/sdk/). The only Python in the project is such tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, anthropic' >/dev/null 2>&1; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check 'openai>=1.40,<3' 'anthropic>=0.34,<1'
fi
