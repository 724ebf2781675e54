#!/usr/bin/env bash
# What the Python-driven tests need: a virtualenv with the official OpenAI and Anthropic
# Python SDKs (tests/sdk/), Playwright for Python (tests/console/), aiosmtpd (the mail
# server of tests/e2e/alert_channels.rs), and Debian's
# Chromium for Playwright to drive (never `playwright install`: no browser download).
# The only Python in the project is such tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup-sdk: /usr/bin/chromium is missing; install Debian's chromium package (as root)" >&2
  fi
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, anthropic, playwright, aiosmtpd' >/dev/null 2>&1; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check 'openai>=1.40,<3' 'anthropic>=0.34,<1' 'playwright>=1.40,<2' 'aiosmtpd>=1.4,<2'
fi
# Log export tests (tests/e2e/export.rs): an S3-compatible store on loopback.
if [ ! -x .venv/bin/moto_server ]; then
  .venv/bin/pip install -q --disable-pip-version-check 'moto[server]>=5,<6'
fi
