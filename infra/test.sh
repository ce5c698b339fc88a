#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (a Python virtualenv
# with moto server and standardwebhooks, see infra/requirements.txt; Debian's chromium and
# playwright-core for the dashboard), then runs every Rust test of the workspace, then the
# deployment checks (infra/check-sam.sh: cfn-lint, sam validate --lint, sam build for arm64).
# The DynamoDB tests start moto themselves on a free port; none is skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for tool in curl node npm python3; do
  command -v "$tool" >/dev/null || { echo "infra/test.sh: $tool is required (apt-get install curl nodejs npm python3-venv)" >&2; exit 1; }
done
./infra/setup-venv.sh
./infra/setup-browser.sh   # Debian's chromium + playwright-core, for the dashboard's browser test
export MOTO_SERVER_BIN="$root/.venv/bin/moto_server"
export CARGO_LAMBDA_BIN="$root/.venv/bin/cargo-lambda"

# The function binaries, which tests/it runs as processes under cargo-lambda's Lambda emulator
# (the same feature set as the tests: nothing is built twice).
cargo build --workspace --all-features --locked --bins
cargo test --workspace --all-features --locked

# The deployment: template.yaml lints clean and validates, and both functions build for Lambda
# (cargo-lambda, arm64, release) as `sam build` builds them.
./infra/check-sam.sh
