// The guide's Node.js signature check, verbatim, run on real deliveries by the tests.
// Usage: node guide_check.js deliveries.json
//   deliveries.json: [{"body": "<raw body>", "signature": "<X-Webhook-Signature>", "secret": "..."}]
// Prints a JSON array of booleans, one per delivery (as Express would: JSON.parse, then the guide).
const fs = require('fs');

const crypto = require('crypto');
function verifyWebhookSignature(payload, signature, secret) {
const hmac = crypto.createHmac('sha256', secret);
const digest = 'sha256=' + hmac.update(JSON.stringify(payload)).digest('hex');
return crypto.timingSafeEqual(
Buffer.from(signature),
Buffer.from(digest)
);
}

const deliveries = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const results = deliveries.map(({ body, signature, secret }) => {
  const payload = JSON.parse(body); // what express.json() hands the handler as req.body
  try {
    return verifyWebhookSignature(payload, signature, secret);
  } catch (e) {
    return false; // timingSafeEqual throws on a length mismatch
  }
});
console.log(JSON.stringify(results));
