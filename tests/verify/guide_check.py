"""The guide's Python signature check, verbatim, plus the Standard Webhooks reference library,
run on real deliveries by the tests.

Usage: python guide_check.py deliveries.json
  deliveries.json: [{"body": "<raw body>", "signature": "<X-Webhook-Signature>", "secret": "...",
                     "headers": {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...}}]
Prints a JSON array of [guide_ok, standard_webhooks_ok] pairs.
"""
import json
import sys

import hmac
import hashlib
def verify_webhook_signature(payload, signature, secret):
    expected = 'sha256=' + hmac.new(
    secret.encode(),
    payload.encode(),
    hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(signature, expected)


def standard_ok(body, headers, secret):
    from standardwebhooks.webhooks import Webhook
    # A `whsec_` secret goes in as it is; any other secret as its UTF-8 bytes (DESIGN.md §4).
    key = secret if secret.startswith("whsec_") else secret.encode()
    try:
        Webhook(key).verify(body, headers)
        return True
    except Exception:
        return False


with open(sys.argv[1], "rb") as f:
    deliveries = json.loads(f.read().decode("utf-8"))
out = []
for d in deliveries:
    # request.get_data(as_text=True): the raw body decoded as UTF-8
    payload = d["body"]
    out.append([verify_webhook_signature(payload, d["signature"], d["secret"]),
                standard_ok(payload, d.get("headers") or {}, d["secret"])])
print(json.dumps(out))
