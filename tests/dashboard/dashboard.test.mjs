// The dashboard in a real browser: headless Debian Chromium driven by playwright-core, against a
// running local mode. Run by functions/local/tests/dashboard.rs:
//
//   node dashboard.test.mjs <baseUrl> <producerToken> <receiverUrl>
//
// <receiverUrl> answers 200 on /hook and 500 on /fail. Exit code 0 = every step passed. On a failure
// a screenshot is saved to $DASHBOARD_ARTIFACTS (default: the OS temp dir) and its path printed.
// DASHBOARD_SCREENSHOTS=1 also saves a screenshot of the wide and the narrow layout.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, producer, receiver] = process.argv.slice(2);
if (!base || !producer || !receiver) {
  console.error('usage: node dashboard.test.mjs <baseUrl> <producerToken> <receiverUrl>');
  process.exit(2);
}
const BUCKET = '6a1b2c3d4e5f60718293a4b5';
const HOOK_URL = `${receiver}/hook`;
const FAIL_URL = `${receiver}/fail`;
const artifacts = process.env.DASHBOARD_ARTIFACTS || tmpdir();
const started = Date.now();

// The whole run is bounded: a hang is a failure, not a stuck test.
const overall = setTimeout(() => {
  console.error('not ok - the browser test did not finish within 150 s');
  process.exit(1);
}, 150_000);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(10_000);
const page = await context.newPage();
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // The API errors this test provokes on purpose are logged by Chromium as failed loads.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});

let passed = 0;
async function step(name, fn) {
  const t = Date.now();
  try {
    await fn();
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
    try {
      mkdirSync(artifacts, { recursive: true });
      const file = join(artifacts, `dashboard-failure-${Date.now()}.png`);
      await page.screenshot({ path: file, fullPage: true });
      console.log(`screenshot: ${file}`);
      console.log(`alert region: ${JSON.stringify(await page.locator('#alert').textContent())}`);
      console.log(`status region: ${JSON.stringify(await page.locator('#status').textContent())}`);
    } catch (se) {
      console.log(`(no screenshot: ${se.message})`);
    }
    console.log(`${passed} passed, 1 failed`);
    await browser.close();
    process.exit(1);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
}

// Polls `fn` until it returns something truthy (bounded).
async function until(what, fn, ms = 10_000, every = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

const alertText = () => page.locator('#alert').textContent();
const statusText = () => page.locator('#status').textContent();
const card = (url) => page.locator('li.hook', { has: page.getByRole('heading', { name: url, exact: true }) });
const button = (scope, name) => scope.getByRole('button', { name, exact: true });
const shot = async (name, selector) => {
  if (!process.env.DASHBOARD_SCREENSHOTS) return;
  mkdirSync(artifacts, { recursive: true });
  const file = join(artifacts, `dashboard-${name}.png`);
  await (selector ? page.locator(selector) : page).screenshot({ path: file, fullPage: !selector });
  console.log(`screenshot: ${file}`);
};

// --------------------------------------------------------------------------------------------

await step('the page loads with its CSP, no inline code, and one h1', async () => {
  const res = await page.goto(`${base}/dashboard`);
  check(res.status() === 200, `200, got ${res.status()}`);
  check((res.headers()['content-security-policy'] || '').includes("script-src 'self'"), 'a CSP header');
  check(await page.locator('h1').textContent() === 'dakkio webhooks', 'the h1');
  check(await page.locator('script:not([src]), style, [style]').count() === 0, 'no inline scripts or styles');
  const handlers = await page.evaluate(() => [...document.querySelectorAll('*')]
    .flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => `${e.tagName}[${a.name}]`)));
  check(handlers.length === 0, `no event-handler attributes, found ${handlers}`);
  await button(page, 'Use development token').waitFor();
});

await step('without a token, the page asks for one (401 in words) and focuses the token field', async () => {
  await page.getByLabel('Bucket id').fill(BUCKET);
  await button(page, 'Show webhooks').click();
  await until('the 401 message', async () => /token is missing, invalid or expired/.test(await alertText()));
  check(await page.evaluate(() => document.activeElement.id) === 'token', 'focus on the token field');
  check(await page.locator('#alert').getAttribute('role') === 'alert', 'the alert region has role=alert');
});

await step('a pasted bad token is refused by the API and the user is asked again', async () => {
  await page.getByLabel('API token (JWT)').fill('not-a-jwt');
  await button(page, 'Use this token').click();
  await until('a 401 after the bad token', async () => /token is missing, invalid or expired/.test(await alertText()));
  check(await page.evaluate(() => sessionStorage.getItem('dakkio.token')) === null, 'the bad token dropped');
});

await step('"Use development token" signs in as dev-user and lists the (empty) bucket', async () => {
  await button(page, 'Use development token').click();
  await until('token state names dev-user', async () => (await page.locator('#token-state').textContent()).includes('dev-user'));
  await button(page, 'Show webhooks').click();
  await until('the empty list', async () => (await page.locator('#list-empty').textContent()).includes('No webhooks'));
  check(await alertText() === '', 'no error left');
  const stored = await page.evaluate(() => ({ s: { ...sessionStorage }, l: { ...localStorage } }));
  check(stored.s['dakkio.token'] && stored.s['dakkio.token'].split('.').length === 3, 'the token in sessionStorage');
  check(!JSON.stringify(stored.l).includes(stored.s['dakkio.token']), 'the token not in localStorage');
  check(JSON.parse(stored.l['dakkio.recentBuckets'])[0] === BUCKET, 'the bucket remembered');
});

let secret;
await step('create a webhook: the one-time secret is shown, then dismissed and gone', async () => {
  await page.getByLabel('URL', { exact: true }).fill(HOOK_URL);
  await page.getByLabel('data.received').check();
  await page.getByLabel('Description (optional)').fill('from the browser test');
  await button(page, 'Create webhook').click();
  await page.locator('#secret-panel').waitFor({ state: 'visible' });
  secret = await page.locator('#secret-value').textContent();
  check(/^whsec_[A-Za-z0-9+/=]+$/.test(secret), `a generated whsec_ secret, got ${secret}`);
  check(await page.evaluate(() => document.activeElement.id) === 'secret-h', 'focus moved to the secret panel');
  await shot('secret');
  await button(page, 'I have stored it, hide it').click();
  await page.locator('#secret-panel').waitFor({ state: 'hidden' });
  const leftovers = await page.evaluate((s) => [document.documentElement.outerHTML.includes(s),
    JSON.stringify({ ...sessionStorage }).includes(s), JSON.stringify({ ...localStorage }).includes(s)], secret);
  check(leftovers.every((x) => !x), `the secret nowhere in the DOM or storage: ${leftovers}`);
});

await step('the webhook is listed with its events, state, stats and secret hint', async () => {
  const c = card(HOOK_URL);
  await c.waitFor();
  const text = await c.textContent();
  for (const want of ['Active', 'alert.triggered, data.received', '0 total, 0 succeeded, 0 failed',
    'from the browser test', '3 retries', secret.slice(-4)]) {
    check(text.includes(want), `card shows ${JSON.stringify(want)}: ${text}`);
  }
});

await step('send a test; the deliveries panel shows it succeeded with 200', async () => {
  const c = card(HOOK_URL);
  await button(c, 'Send test').click();
  await until('status says queued', async () => /Test delivery .* queued/.test(await statusText()));
  await button(c, 'Deliveries').click();
  await page.locator('#deliveries-panel').waitFor({ state: 'visible' });
  await until('the panel names the webhook', async () => (await page.locator('#deliveries-url').textContent()) === HOOK_URL);
  const row = page.locator('#attempts tbody tr', { hasText: 'webhook.test' });
  await until('a successful webhook.test attempt with 200', async () => {
    if (!(await row.count())) {
      await button(page, 'Refresh').click();
      return false;
    }
    const t = await row.first().textContent();
    return t.includes('success') && /Code\s*200|200/.test(t) ? t : false;
  }, 20_000, 500);
  check(await row.first().locator('td[data-label=Code]').textContent() === '200', 'status code 200');
});

await step('a published event shows up by itself (auto-refresh) and the stats follow', async () => {
  const res = await fetch(`${base}/api/events`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${producer}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ bucketId: BUCKET, event: 'data.received', data: { dataSourceName: 'Sensor 1', values: { t: 21.5 } } }),
  });
  check(res.status === 202, `publish answered ${res.status}`);
  await until('a data.received success row without clicking Refresh', async () =>
    (await page.locator('#attempts tbody tr.success', { hasText: 'data.received' }).count()) === 1, 20_000, 250);
  await until('the card stats updated', async () =>
    (await card(HOOK_URL).locator('.stats').textContent()) === '2 total, 2 succeeded, 0 failed');
  await shot('wide');
});

await step('the 24 h chart draws 24 hours from the hourly stats: bars by outcome, latency lines, a summary', async () => {
  await until('the summary counts both deliveries', async () =>
    (await page.locator('#hourly-summary').textContent()).startsWith('Last 24 h: 2 delivered, 0 failed; p95 latency up to '));
  const hours = page.locator('#hourly-chart svg g.hour');
  check(await hours.count() === 24, `24 hours drawn, got ${await hours.count()}`);
  check(await page.locator('#hourly-chart svg rect.failed').count() === 0, 'no failed bar');
  const bars = await page.locator('#hourly-chart svg rect.delivered').count();
  check(bars >= 1 && bars <= 2, `one delivered bar (two across an hour boundary), got ${bars}`);
  const titles = await hours.locator('title').allTextContents();
  const busy = titles.filter((t) => !/: 0 delivered, 0 failed$/.test(t));
  check(busy.every((t) => /^\d\d:00: [12] delivered, 0 failed, p50 \d+ ms, p95 \d+ ms$/.test(t)), `hour titles: ${busy}`);
  check(await page.locator('#hourly-chart svg .p50').count() >= 1 && await page.locator('#hourly-chart svg .p95').count() >= 1,
    'p50 and p95 drawn');
  // What it draws is what the API answers.
  const jwt = await page.evaluate(() => sessionStorage.getItem('dakkio.token'));
  const id = await card(HOOK_URL).getAttribute('data-id');
  const api = await (await fetch(`${base}/api/webhooks/${id}/stats/hourly`, { headers: { Authorization: `Bearer ${jwt}` } })).json();
  check(api.data.length === 24 && api.data.reduce((s, h) => s + h.delivered, 0) === 2, `the API's hours: ${JSON.stringify(api.data)}`);
});

await step('accessibility: labels, real buttons, visible focus, contrast ≥ 4.5:1, live regions', async () => {
  const report = await page.evaluate(() => {
    const problems = [];
    for (const i of document.querySelectorAll('input, select, textarea')) {
      if (!i.labels.length && !i.getAttribute('aria-label')) problems.push(`unlabelled ${i.outerHTML}`);
    }
    for (const e of document.querySelectorAll('[role=button], div[tabindex], span[tabindex], a:not([href])')) {
      problems.push(`fake control ${e.outerHTML}`);
    }
    if (document.getElementById('status').getAttribute('role') !== 'status') problems.push('status region');
    // Contrast of every visible text against its nearest opaque background.
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
      .reduce((s, v, k) => s + v * [0.2126, 0.7152, 0.0722][k], 0);
    const bg = (e) => {
      for (; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    let checked = 0;
    for (const e of document.querySelectorAll('body *')) {
      const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || !e.getClientRects().length || e.closest('[hidden], :disabled')) continue;
      const a = lum(rgb(getComputedStyle(e).color));
      const b = lum(bg(e));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      checked += 1;
      if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for ${e.tagName} "${e.textContent.trim().slice(0, 30)}"`);
    }
    return { problems, checked };
  });
  check(report.checked > 60, `checked text elements: ${report.checked}`);
  check(report.problems.length === 0, report.problems.join('; '));
  // Keyboard: Tab reaches the controls and the focused one has a visible outline.
  await page.getByLabel('API token (JWT)').focus();
  await page.keyboard.press('Tab');
  const focus = await page.evaluate(() => {
    const e = document.activeElement;
    const s = getComputedStyle(e);
    return { tag: e.tagName, text: e.textContent, outline: s.outlineStyle, width: parseFloat(s.outlineWidth) };
  });
  check(focus.tag === 'BUTTON' && focus.outline !== 'none' && focus.width >= 2, `a visible focus ring: ${JSON.stringify(focus)}`);
});

await step('the narrow layout (375 px) is one column with no horizontal scrolling', async () => {
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(100);
  const m = await page.evaluate(() => {
    const d = document.documentElement;
    const cols = getComputedStyle(document.querySelector('.columns')).gridTemplateColumns.split(' ').length;
    return { scroll: d.scrollWidth, client: d.clientWidth, cols };
  });
  check(m.scroll <= m.client, `scrollWidth ${m.scroll} <= clientWidth ${m.client}`);
  check(m.cols === 1, `one column, got ${m.cols}`);
  await shot('narrow');
  await shot('narrow-list', '#webhooks');
  await shot('narrow-deliveries', '#deliveries-panel');
  await page.setViewportSize({ width: 1280, height: 900 });
});

await step('edit: PATCH url stays, description and retries change', async () => {
  const c = card(HOOK_URL);
  await button(c, 'Edit').click();
  check(await page.evaluate(() => document.activeElement.id) === 'f-url', 'focus on the URL field');
  check(await page.getByLabel('Description (optional)').inputValue() === 'from the browser test', 'the form prefilled');
  await page.getByLabel('Description (optional)').fill('edited in the browser');
  await page.getByLabel('Max retries (0–20)').fill('5');
  await button(page, 'Save changes').click();
  await until('the card shows the edit', async () => {
    const t = await card(HOOK_URL).textContent();
    return t.includes('edited in the browser') && t.includes('5 retries');
  });
  check(await page.locator('#form-h').textContent() === 'New webhook', 'the form back to create');
});

await step('rate limit: set in the edit form, shown on the card and by the API; out of range refused; emptied, removed', async () => {
  const hook = async () => {
    const token = await page.evaluate(() => sessionStorage.getItem('dakkio.token'));
    const res = await fetch(`${base}/api/webhooks`, { headers: { Authorization: `Bearer ${token}` } });
    return (await res.json()).data.find((w) => w.url === HOOK_URL);
  };
  const rate = page.getByLabel('Rate limit, deliveries per second (optional, 1–10000)');
  await button(card(HOOK_URL), 'Edit').click();
  check(await rate.inputValue() === '', 'no limit yet: the field is empty');
  await rate.fill('5');
  await button(page, 'Save changes').click();
  await until('the card shows the limit', async () => (await card(HOOK_URL).textContent()).includes('5 deliveries/s'));
  check((await hook()).rateLimit === 5, 'the API has rateLimit 5');
  // Out of range: the form does not submit (the field says why), nothing changes.
  await button(card(HOOK_URL), 'Edit').click();
  check(await rate.inputValue() === '5', 'the form prefilled with the limit');
  await rate.fill('10001');
  await button(page, 'Save changes').click();
  check(!(await rate.evaluate((e) => e.validity.valid)), 'the browser refuses 10001');
  check((await hook()).rateLimit === 5, 'still 5');
  // Emptied: PATCH rateLimit null removes it.
  await rate.fill('');
  await button(page, 'Save changes').click();
  await until('the card without a limit', async () => !(await card(HOOK_URL).textContent()).includes('deliveries/s'));
  check((await hook()).rateLimit === null, 'the API has no rateLimit');
});

await step('disable (by keyboard): the card says Disabled, and a test send is refused in words', async () => {
  // By keyboard: Enter on the focused button; focus stays on the re-rendered Enable button.
  await button(card(HOOK_URL), 'Disable').focus();
  await page.keyboard.press('Enter');
  await until('Disabled badge', async () => (await card(HOOK_URL).locator('.badge').first().textContent()) === 'Disabled');
  await until('focus on Enable', async () => (await page.evaluate(() => document.activeElement.textContent)) === 'Enable');
  await button(card(HOOK_URL), 'Send test').click();
  await until('the webhook_inactive message', async () => /disabled; enable it/.test(await alertText()));
});

await step('an invalid URL: the API\'s invalid_url message is shown in the alert region', async () => {
  const token = await page.evaluate(() => sessionStorage.getItem('dakkio.token'));
  const direct = await fetch(`${base}/api/webhooks`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ bucketId: BUCKET, url: 'ftp://x', events: ['alert.triggered'] }),
  });
  const body = await direct.json();
  check(direct.status === 400 && body.error.code === 'invalid_url', `the API refuses ftp://x: ${JSON.stringify(body)}`);
  await page.getByLabel('URL', { exact: true }).fill('ftp://x');
  await button(page, 'Create webhook').click();
  await until('the invalid_url message', async () => (await alertText()) === body.error.message);
  await shot('error');
  check(await card('ftp://x').count() === 0, 'nothing created');
});

await step('dead letters: a failing webhook ends in the dead-letter list, and Redeliver queues it again', async () => {
  await page.getByLabel('URL', { exact: true }).fill(FAIL_URL);
  await page.getByLabel('Max retries (0–20)').fill('0');
  await button(page, 'Create webhook').click();
  await page.locator('#secret-panel').waitFor({ state: 'visible' });
  await button(page, 'I have stored it, hide it').click();
  const c = card(FAIL_URL);
  await button(c, 'Send test').click();
  await button(c, 'Deliveries').click();
  await until('the deliveries panel on the failing webhook', async () => (await page.locator('#deliveries-url').textContent()) === FAIL_URL);
  const dead = page.locator('#dead tbody tr');
  await until('a dead letter', async () => {
    if (await dead.count()) return true;
    await button(page, 'Refresh').click();
    return false;
  }, 20_000, 500);
  check((await page.locator('#attempts tbody tr.failed td[data-label=Code]').first().textContent()) === '500', 'the attempt failed with 500');
  await button(dead.first(), 'Redeliver').click();
  await until('status says queued again', async () => /queued again/.test(await statusText()));
  await until('dead again after the redelivery', async () => {
    await button(page, 'Refresh').click();
    return (await page.locator('#attempts tbody tr.failed').count()) >= 2 && (await dead.count()) === 1;
  }, 20_000, 500);
  await until('the chart counts the failures', async () => {
    await button(page, 'Refresh').click();
    return /^Last 24 h: 0 delivered, 2 failed\.$/.test(await page.locator('#hourly-summary').textContent());
  }, 20_000, 500);
  check(await page.locator('#hourly-chart svg rect.failed').count() >= 1, 'a failed bar');
  await button(page, 'Redeliver all').click();
  await until('status says 1 queued again', async () => /1 dead letter\(s\) queued again/.test(await statusText()));
  await button(page, 'Close').click();
  await page.locator('#deliveries-panel').waitFor({ state: 'hidden' });
});

await step('a webhook whose deliveries fail is badged Failing, with since when and the last error', async () => {
  await until('the Failing badge', async () => {
    await button(page, 'Refresh list').click();
    return (await card(FAIL_URL).locator('.badge').first().textContent()) === 'Failing';
  }, 20_000, 500);
  const note = await card(FAIL_URL).locator('.state-note').textContent();
  check(/^Deliveries failing since .+/.test(note), `since when: ${note}`);
  check(/500/.test(note), `the last error: ${note}`);
  check(await card(FAIL_URL).locator('.state-note time').count() === 1, 'a <time> element');
  // The healthy one stays Active.
  check((await card(HOOK_URL).locator('.badge').first().textContent()) !== 'Failing', 'the healthy webhook is not failing');
});

await step('rotate the secret (after confirming): the new one is shown once and the hint changes', async () => {
  page.once('dialog', (d) => d.accept());
  await button(card(HOOK_URL), 'Rotate secret').click();
  await page.locator('#secret-panel').waitFor({ state: 'visible' });
  const rotated = await page.locator('#secret-value').textContent();
  check(/^whsec_/.test(rotated) && rotated !== secret, `a new whsec_ secret, got ${rotated}`);
  await until('the status names the grace period', async () => /old one signs too until/.test(await statusText()));
  const graceText = await statusText();
  check(!graceText.includes('[object') && /until .*\d/.test(graceText), `the grace period ends at a date: ${graceText}`);
  await button(page, 'I have stored it, hide it').click();
  await page.locator('#secret-panel').waitFor({ state: 'hidden' });
  await until('the card shows the new hint', async () => (await card(HOOK_URL).textContent()).includes(rotated.slice(-4)));
  check(!(await page.evaluate((s) => document.documentElement.outerHTML.includes(s), rotated)), 'the new secret gone from the page');
});

await step('rotate and revoke the old secret now (after confirming): a new secret once, no previous secret left', async () => {
  const hook = async () => {
    const token = await page.evaluate(() => sessionStorage.getItem('dakkio.token'));
    const res = await fetch(`${base}/api/webhooks`, { headers: { Authorization: `Bearer ${token}` } });
    return (await res.json()).data.find((w) => w.url === HOOK_URL);
  };
  check((await hook()).previousSecretExpiresAt, 'the grace rotation left a previous secret');
  const before = await page.locator('#secret-value').textContent();
  page.once('dialog', (d) => d.accept());
  await button(card(HOOK_URL), 'Rotate, revoke old now').click();
  await page.locator('#secret-panel').waitFor({ state: 'visible' });
  const revoked = await page.locator('#secret-value').textContent();
  check(/^whsec_/.test(revoked) && revoked !== before, `a new whsec_ secret, got ${revoked}`);
  await until('the status says the old one is revoked', async () => /the old one is revoked/.test(await statusText()));
  const after = await hook();
  check(after.previousSecretExpiresAt === null, `no previous secret: ${JSON.stringify(after)}`);
  check(after.secretHint.endsWith(revoked.slice(-4)), 'the hint is the new secret\'s');
  await button(page, 'I have stored it, hide it').click();
  await page.locator('#secret-panel').waitFor({ state: 'hidden' });
  check(!(await page.evaluate((s) => document.documentElement.outerHTML.includes(s), revoked)), 'the new secret gone from the page');
});

await step('notifications: none set; a bad secret refused in words, nothing set; set → generated secret once; a typed one not echoed; removed after confirming', async () => {
  const NOTIFY_URL = `${receiver}/notify`;
  const get = async () => {
    const token = await page.evaluate(() => sessionStorage.getItem('dakkio.token'));
    const res = await fetch(`${base}/api/notifications`, { headers: { Authorization: `Bearer ${token}` } });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  const stateText = () => page.locator('#notify-state').textContent();
  const facts = () => page.locator('#notify-facts').textContent();
  await until('none set', async () => /No notification endpoint is set/.test(await stateText()));
  check(await button(page, 'Remove notification endpoint').count() === 0, 'no Remove button while none is set');
  // A secret the API refuses: its message in the alert region, nothing stored.
  await page.getByLabel('Notification endpoint URL').fill(NOTIFY_URL);
  await page.getByLabel('Notification secret (optional)').fill('short');
  await button(page, 'Set notification endpoint').click();
  await until('the invalid_secret message', async () => /secret must be 8 to 512 characters/.test(await alertText()));
  check((await get()).status === 404, 'nothing set after the refused request');
  // Set with no secret: a generated one is shown once, then gone.
  await page.getByLabel('Notification secret (optional)').fill('');
  await button(page, 'Set notification endpoint').click();
  await page.locator('#secret-panel').waitFor({ state: 'visible' });
  const generated = await page.locator('#secret-value').textContent();
  check(/^whsec_[A-Za-z0-9+/=]+$/.test(generated), `a generated whsec_ secret, got ${generated}`);
  check(await alertText() === '', 'the earlier error cleared');
  await button(page, 'I have stored it, hide it').click();
  await page.locator('#secret-panel').waitFor({ state: 'hidden' });
  check(await page.evaluate(() => document.activeElement.id) === 'notify-h', 'focus back on the notifications heading');
  await until('the endpoint shown', async () => (await facts()).includes(NOTIFY_URL));
  for (const want of ['Active', generated.slice(-4), '0 total, 0 succeeded, 0 failed']) {
    check((await facts()).includes(want), `shows ${JSON.stringify(want)}: ${await facts()}`);
  }
  let got = await get();
  check(got.status === 200 && got.body.url === NOTIFY_URL && !('secret' in got.body)
    && got.body.secretHint.endsWith(generated.slice(-4)), `the API has it, without the secret: ${JSON.stringify(got)}`);
  check(!(await page.evaluate((x) => document.documentElement.outerHTML.includes(x), generated)), 'the secret gone from the page');
  // A typed secret replaces it and is not shown back.
  await page.getByLabel('Notification secret (optional)').fill('my-notify-secret-1');
  await button(page, 'Save notification endpoint').click();
  await until('status says saved', async () => /Notifications go to/.test(await statusText()));
  check(await page.locator('#secret-panel').isHidden(), 'a typed secret is not shown back');
  await until('the new hint', async () => (await facts()).includes('et-1'));
  got = await get();
  check(got.body.secretHint.endsWith('et-1'), `the API's hint is the typed secret's: ${JSON.stringify(got.body)}`);
  check(await page.getByLabel('Notification secret (optional)').inputValue() === '', 'the secret field emptied');
  // Removed after confirming.
  page.once('dialog', (d) => d.accept());
  await button(page, 'Remove notification endpoint').click();
  await until('none set again', async () => /No notification endpoint is set/.test(await stateText()));
  check((await get()).status === 404, 'the API has none');
});

await step('delete (after confirming): the webhooks are gone from the list', async () => {
  for (const url of [HOOK_URL, FAIL_URL]) {
    page.once('dialog', (d) => d.accept());
    await button(card(url), 'Delete').click();
    await until(`${url} gone`, async () => (await card(url).count()) === 0);
  }
  await until('the empty list', async () => (await page.locator('#list-empty').textContent()).includes('No webhooks'));
});

await step('no script errors or CSP violations were logged', async () => {
  check(consoleErrors.length === 0, consoleErrors.join('\n'));
});

clearTimeout(overall);
await browser.close();
console.log(`${passed} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
