#!/usr/bin/env bash
# The deployment checks (run by infra/test.sh): template.yaml lints clean and validates, and both
# functions build for AWS Lambda (arm64, release) exactly as `sam build` builds them. Fails on any
# problem. Installs what it needs, idempotently: the SAM CLI, cfn-lint and cargo-lambda (with zig)
# into ./.venv (infra/requirements.txt, through infra/setup-venv.sh), and the Rust arm64 target.
# Needs no AWS account and no Docker. Prints each step's time and the built binaries' sizes (with a warning over the 15 MiB goal).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export PATH="$root/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"   # sam validate reads this one only

step() {
  local name="$1"
  shift
  echo "check-sam: $name" >&2
  local start=$SECONDS
  "$@"
  echo "check-sam: $name: ok in $((SECONDS - start)) s" >&2
}

install_tools() {
  ./infra/setup-venv.sh
  for tool in sam cfn-lint cargo-lambda; do
    [ -x "$root/.venv/bin/$tool" ] || { echo "check-sam: $tool missing from .venv" >&2; return 1; }
  done
  # cargo-lambda links with zig; the pip package brings it as the `ziglang` module.
  command -v zig >/dev/null || python3 -m ziglang version >/dev/null \
    || { echo "check-sam: no zig (pip install cargo-lambda brings it)" >&2; return 1; }
  if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
  fi
}

# Runs a SAM CLI command; prints its whole output only when it fails, else just its verdict.
quiet_sam() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    return 1
  fi
  grep -E 'valid SAM Template|Build Succeeded' <<<"$out" >&2 || true
}

MAX_BOOTSTRAP_BYTES=$((15 * 1024 * 1024))

report_binaries() {
  local ok=true
  for f in ApiFunction DeliveryFunction; do
    local bin=".aws-sam/build/$f/bootstrap"
    if [ ! -f "$bin" ]; then
      echo "check-sam: $bin was not built" >&2
      ok=false
      continue
    fi
    # An ELF executable for AArch64 (e_machine 183), as Lambda's arm64 runtime runs.
    local machine
    machine="$(python3 -c 'import sys; h = open(sys.argv[1], "rb").read(20); print(int.from_bytes(h[18:20], "little") if h[:4] == b"\x7fELF" else -1)' "$bin")"
    if [ "$machine" != 183 ]; then
      echo "check-sam: $bin is not an arm64 ELF executable (e_machine $machine)" >&2
      ok=false
    fi
    local size
    size="$(stat -c %s "$bin")"
    printf 'check-sam: %-17s %s bytes (%s)\n' "$f" "$size" "$(du -h "$bin" | cut -f1)" >&2
    # The size goal of each function's package (a smaller bootstrap loads faster at cold start):
    # 15 MiB. Said, not enforced: the API's is over it (15.9 MB, measured 2026-12-02 with and
    # without aws-sdk-sns, which LTO already removed from it as unused).
    if [ "$size" -gt "$MAX_BOOTSTRAP_BYTES" ]; then
      echo "check-sam: warning: $bin is $size bytes, over the goal of $MAX_BOOTSTRAP_BYTES" >&2
    fi
  done
  $ok
}

total=$SECONDS
step "install tools" install_tools
step "cfn-lint template.yaml" cfn-lint template.yaml
step "sam validate --lint" quiet_sam sam validate --lint --template-file template.yaml
step "sam build (cargo lambda build --release --arm64, both functions)" \
  quiet_sam ./infra/sam-build.sh
step "arm64 bootstrap binaries" report_binaries
echo "check-sam: all ok in $((SECONDS - total)) s" >&2
