#!/usr/bin/env bash
# `sam build` for this workspace, with the tools of ./.venv (SAM CLI, cargo-lambda and its zig;
# see infra/requirements.txt): both functions cross-compiled for arm64 in release mode into
# .aws-sam/build/<Function>/bootstrap. Extra arguments go to `sam build`.
#
# Why not plain `sam build`: the SAM CLI pinned here (aws-lambda-builders 1.60) compiles each
# function in its own `<CodeUri>/target`, so the AWS SDK and everything else would be compiled
# twice. Here both share one target directory (target/sam); only the two small binaries are
# written under functions/*/target/lambda, where the SAM CLI copies them from, and removed after.
# (Plain `sam build` works too, just slower; newer SAM CLIs share the workspace's target.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

export PATH="$root/.venv/bin:$PATH"   # sam, cargo-lambda; python3 -m ziglang (zig) for the linker
export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export CARGO_TARGET_DIR="$root/target/sam"
export CARGO_LAMBDA_GLOBAL="$root/infra/cargo-lambda-sam.toml"

code_uris=(functions/api functions/delivery)
existed=()
for d in "${code_uris[@]}"; do
  if [ -e "$d/target" ]; then existed+=("$d"); fi
done
cleanup() {
  for d in "${code_uris[@]}"; do
    rm -rf "$d/target/lambda"
    # Remove the directory only if this script created it and it is empty now.
    if [[ " ${existed[*]-} " != *" $d "* ]] && [ -d "$d/target" ]; then
      rmdir "$d/target" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT

sam build --beta-features --template-file template.yaml --build-dir .aws-sam/build "$@"
