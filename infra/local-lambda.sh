#!/usr/bin/env bash
# Both Lambda functions served locally, on an AWS emulator, without Docker:
#   1. installs the tools (./infra/setup-venv.sh: moto server, cargo-lambda);
#   2. starts moto server on 127.0.0.1:$MOTO_PORT (default 5005);
#   3. creates the tables and queues of template.yaml in it, under the names events/env.json uses,
#      and seeds what the files of events/ refer to (the API fixtures' webhook with an attempt and
#      a dead letter; the SQS fixtures' webhooks pointed at $RECEIVER_URL, default
#      http://127.0.0.1:3000/webhook, secret your_webhook_secret) — with the integration tests'
#      own code (tests/examples/local-lambda.rs);
#   4. writes the functions' environment (endpoint, region, dummy credentials, names) to
#      target/local-lambda.env and runs `cargo lambda watch --env-file target/local-lambda.env`
#      in the foreground (invoke port $INVOKE_PORT, default 9000): it builds both functions on
#      the first invoke and rebuilds them on change.
# Ctrl-C stops cargo-lambda and moto. Then, in another terminal (see the README):
#   export PATH=$PWD/.venv/bin:$PATH
#   cargo lambda invoke webhooks-api --data-file events/apigw-v2-get-webhook.json
#   cargo lambda invoke webhooks-delivery --data-file events/sqs-delivery-single.json
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

moto_port="${MOTO_PORT:-5005}"
invoke_port="${INVOKE_PORT:-9000}"
receiver="${RECEIVER_URL:-http://127.0.0.1:3000/webhook}"
endpoint="http://127.0.0.1:$moto_port"
env_file="$root/target/local-lambda.env"

./infra/setup-venv.sh
for port in "$moto_port" "$invoke_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "infra/local-lambda.sh: port $port is in use (set MOTO_PORT / INVOKE_PORT)" >&2
    exit 1
  fi
done

mkdir -p "$root/target"
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$root/target/local-lambda-moto.log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -s -o /dev/null "$endpoint" && break
  kill -0 "$moto_pid" 2>/dev/null || { cat "$root/target/local-lambda-moto.log" >&2; exit 1; }
  sleep 0.2
done
curl -s -o /dev/null "$endpoint" || { echo "infra/local-lambda.sh: moto did not start" >&2; exit 1; }

# The workspace's own feature set, so this shares the test build's artifacts.
cargo build --workspace --all-features --locked --examples -q
"$root/target/debug/examples/local-lambda" --endpoint "$endpoint" --receiver "$receiver" \
  --env-file "$env_file"

echo "infra/local-lambda.sh: moto on $endpoint (log: target/local-lambda-moto.log); environment in" \
  "target/local-lambda.env; serving both functions on port $invoke_port (Ctrl-C stops all)" >&2
"$root/.venv/bin/cargo-lambda" lambda watch -P "$invoke_port" --env-file "$env_file"
