#!/usr/bin/env bash
# Installs what the hub needs on a Debian machine: system packages (ODBC driver for MariaDB,
# ...) and a virtualenv at .venv with the project and its dev tools. Idempotent and quick when
# everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(unixodbc odbc-mariadb
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 libharfbuzz-bin fontconfig
  fonts-dejavu-core fonts-noto-cjk poppler-utils
  chromium chromium-driver sqlmap iproute2)  # the last four for tests: dashboard, sqlmap, tc

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
# Reinstall when the dependencies or the set of packages change (an editable install
# records which folders are packages).
stamp=.venv/.installed-$( (cat pyproject.toml; find hub connectors mappings certificates \
  -name __init__.py | sort) | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
