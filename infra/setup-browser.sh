#!/usr/bin/env bash
# What the dashboard's browser test (functions/local/tests/dashboard.rs) needs: Debian's Chromium
# at /usr/bin/chromium and playwright-core in tests/dashboard/node_modules. Idempotent and quiet:
# installs Chromium only when it is absent (apt-get update first, only then), and runs `npm ci`
# only when node_modules is missing or package-lock.json changed (a stamp file records its hash).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  echo "infra/setup-browser.sh: installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  log="$(mktemp)"
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
fi

command -v npm >/dev/null || { echo "infra/setup-browser.sh: node and npm are required (apt-get install nodejs npm)" >&2; exit 1; }
dir="$root/tests/dashboard"
stamp="$dir/node_modules/.package-lock.sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -d "$dir/node_modules/playwright-core" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "infra/setup-browser.sh: npm ci in tests/dashboard" >&2
(cd "$dir" && npm ci --silent --no-audit --no-fund)
echo "$want" > "$stamp"
