// dakkio webhooks dashboard: plain JS, same origin as the API, no dependencies.
// The token lives in sessionStorage only; a webhook's secret is shown once and then dropped.
// API data is only ever written with textContent.
'use strict';

const TOKEN_KEY = 'dakkio.token';
const BUCKETS_KEY = 'dakkio.recentBuckets';
const AUTO_REFRESH_MS = 5000;

const $ = (id) => document.getElementById(id);
const state = {
  bucket: null, hooks: [], editing: null, open: null, timer: null, shown: '', chart: '', notify: null, secretBack: null,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- small DOM helpers ----------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'className') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function when(iso) {
  if (!iso) return el('span', { text: 'never' });
  const d = new Date(iso);
  return el('time', { datetime: iso, text: isNaN(d) ? iso : d.toLocaleString() });
}

function say(message) {
  // Re-set so the same message is announced again.
  $('status').textContent = '';
  setTimeout(() => { $('status').textContent = message; }, 30);
}

function showError(err) {
  let msg = err && err.message ? err.message : String(err);
  if (err instanceof ApiError && err.status === 401) {
    msg = `Your token is missing, invalid or expired (${msg}). Paste a token above` +
      ($('dev-token').hidden ? '.' : ' or use the development token.');
  } else if (err instanceof ApiError && err.status === 403) {
    msg = `Not allowed: ${msg}`;
  }
  $('alert').textContent = msg;
}

function clearError() {
  $('alert').textContent = '';
}

// Runs an action: clears the last error, marks the button busy meanwhile (aria-busy, not
// `disabled`, which would drop keyboard focus) and ignores clicks on it until done.
async function run(button, fn) {
  if (button && button.getAttribute('aria-busy') === 'true') return;
  clearError();
  $('status').textContent = '';
  if (button) button.setAttribute('aria-busy', 'true');
  try {
    await fn();
  } catch (err) {
    showError(err);
  } finally {
    if (button) button.removeAttribute('aria-busy');
  }
}

// ---- the API --------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const t = token();
  if (!t) {
    needToken();
    throw new ApiError(401, 'unauthorized', 'no token yet');
  }
  const init = { method, headers: { Authorization: `Bearer ${t}` } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `Could not reach the API (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const e = (data && data.error) || {};
    if (res.status === 401) needToken();
    throw new ApiError(res.status, e.code || `http_${res.status}`,
      e.message || `The API answered ${res.status} ${res.statusText}.`);
  }
  return data;
}

const hookPath = (id, rest = '') => `/api/webhooks/${encodeURIComponent(id)}${rest}`;

// ---- token ----------------------------------------------------------------------------------

function claims(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

function showTokenState() {
  const t = token();
  const c = t && claims(t);
  let text = 'No token yet. It is kept for this browser tab only.';
  if (t) {
    text = 'Token set';
    if (c && c.sub) text += ` for user ${c.sub}`;
    if (c && c.exp) text += `, ${c.exp * 1000 < Date.now() ? 'expired' : 'valid until'} ${new Date(c.exp * 1000).toLocaleString()}`;
    text += '.';
  }
  $('token-state').textContent = text;
}

function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
}

function needToken() {
  setToken(null);
  $('token').focus();
}

// ---- buckets --------------------------------------------------------------------------------

function recentBuckets() {
  try {
    const list = JSON.parse(localStorage.getItem(BUCKETS_KEY) || '[]');
    return Array.isArray(list) ? list.filter((b) => /^[0-9a-f]{24}$/.test(b)) : [];
  } catch {
    return [];
  }
}

function rememberBucket(b) {
  const list = [b, ...recentBuckets().filter((x) => x !== b)].slice(0, 8);
  localStorage.setItem(BUCKETS_KEY, JSON.stringify(list));
  showRecentBuckets();
}

function showRecentBuckets() {
  $('recent-buckets').replaceChildren(...recentBuckets().map((b) => el('option', { value: b })));
}

// ---- the webhook list -----------------------------------------------------------------------

async function loadWebhooks() {
  if (!state.bucket) return;
  const hooks = [];
  let cursor = null;
  for (let page = 0; page < 50; page++) {
    const q = new URLSearchParams({ bucketId: state.bucket, limit: '100' });
    if (cursor) q.set('cursor', cursor);
    const res = await api('GET', `/api/webhooks?${q}`);
    hooks.push(...res.data);
    cursor = res.nextCursor;
    if (!cursor) break;
  }
  // A failing webhook's reason (its last error) is in its circuit breaker's health, which only
  // GET of one webhook answers: read it for the failing ones (few, and worth the request).
  await Promise.all(hooks.filter((w) => w.active && w.failingSince).map(async (w) => {
    try {
      w.health = (await api('GET', `/api/webhooks/${encodeURIComponent(w.id)}`)).health;
    } catch (e) {
      w.health = null; // the badge still says failing and since when
    }
  }));
  state.hooks = hooks;
  renderList();
}

const byAction = (action, id) =>
  document.querySelector(`[data-action="${action}"][data-id="${CSS.escape(id || '')}"]`);

// Re-renders while keeping keyboard focus on the "same" control (same action, same item).
function keepFocus(fn) {
  const a = document.activeElement;
  const key = a && a.dataset && a.dataset.action ? [a.dataset.action, a.dataset.id] : null;
  fn();
  const again = key && byAction(key[0], key[1]);
  if (again) again.focus();
}

function renderList() {
  keepFocus(() => {
    $('list-h').textContent = `Webhooks of bucket ${state.bucket}`;
    $('list-empty').textContent = state.hooks.length ? '' : 'No webhooks in this bucket yet.';
    $('list-empty').hidden = state.hooks.length > 0;
    $('webhooks').replaceChildren(...state.hooks.map(card));
  });
}

function retryText(r) {
  if (!r) return '';
  return `${r.maxRetries} retries, backoff ×${r.backoffMultiplier}, first after ${r.initialDelaySeconds} s`;
}

function statsText(w) {
  const s = w.stats || {};
  return `${s.totalDeliveries ?? 0} total, ${s.successfulDeliveries ?? 0} succeeded, ${s.failedDeliveries ?? 0} failed`;
}

function lastDelivery(w) {
  return w.lastDeliveryStatus
    ? el('span', {}, `${w.lastDeliveryStatus} at `, when(w.lastDeliveryAt))
    : el('span', { text: 'none yet' });
}

// The state badge: Disabled (with the service's reason when it disabled it), Failing (its
// deliveries fail: since when, and the last error), or Active.
function stateBadge(w) {
  if (!w.active) return el('span', { className: 'badge off', text: 'Disabled' });
  if (w.failingSince) return el('span', { className: 'badge warn', text: 'Failing' });
  return el('span', { className: 'badge on', text: 'Active' });
}

function stateNote(w) {
  if (!w.active) {
    return w.disabledReason ? el('p', { className: 'desc state-note', text: `Disabled by the service: ${w.disabledReason}` }) : null;
  }
  if (!w.failingSince) return null;
  const reason = w.health && w.health.lastError ? `: ${w.health.lastError}` : '';
  return el('p', { className: 'desc state-note' }, 'Deliveries failing since ', when(w.failingSince), reason);
}

function card(w) {
  const id = w.id;
  const btn = (action, text, cls) => el('button', { type: 'button', className: cls, dataset: { action, id }, text });
  const testSelect = el('select', { id: `test-event-${id}` },
    el('option', { value: '', text: 'first subscribed event' }),
    ...w.events.map((e) => el('option', { value: e, text: e })));
  return el('li', { className: 'hook', id: `hook-${id}`, dataset: { id } },
    el('article', { 'aria-labelledby': `hook-url-${id}` },
      el('h3', { id: `hook-url-${id}`, className: 'url', text: w.url }),
      el('p', {},
        stateBadge(w),
        w.format && w.format !== 'json' ? el('span', { className: 'badge', text: `format: ${w.format}` }) : null),
      w.description ? el('p', { className: 'desc', text: w.description }) : null,
      el('dl', { className: 'facts' },
        el('dt', { text: 'Events' }), el('dd', { text: w.events.join(', ') }),
        el('dt', { text: 'Deliveries' }),
        el('dd', { className: 'stats', text: statsText(w) }),
        el('dt', { text: 'Last delivery' }), el('dd', { className: 'last' }, lastDelivery(w)),
        el('dt', { text: 'Retries' }), el('dd', { text: retryText(w.retryConfig) }),
        w.rateLimit ? el('dt', { text: 'Rate limit' }) : null,
        w.rateLimit ? el('dd', { className: 'rate', text: `${w.rateLimit} deliveries/s` }) : null,
        w.filter ? el('dt', { text: 'Filter' }) : null,
        w.filter ? el('dd', { className: 'mono', text: JSON.stringify(w.filter) }) : null,
        w.headers && w.headers.length ? el('dt', { text: 'Headers' }) : null,
        w.headers && w.headers.length
          ? el('dd', { className: 'mono', text: w.headers.map((h) => `${h.name}: ${h.hint}`).join(', ') }) : null,
        el('dt', { text: 'Secret' }), el('dd', { text: w.secretHint || '' }),
        el('dt', { text: 'Id' }), el('dd', { className: 'mono', text: id })),
      el('div', { className: 'row center' },
        el('label', { for: `test-event-${id}`, text: 'Test event' }), testSelect,
        btn('test', 'Send test')),
      el('div', { className: 'row' },
        btn('deliveries', 'Deliveries'),
        btn('edit', 'Edit', 'secondary'),
        btn('toggle', w.active ? 'Disable' : 'Enable', 'secondary'),
        btn('rotate', 'Rotate secret', 'secondary'),
        btn('rotate-now', 'Rotate, revoke old now', 'secondary'),
        btn('delete', 'Delete', 'danger'))),
      stateNote(w));
}

async function onListClick(ev) {
  const b = ev.target.closest('button[data-action]');
  if (!b) return;
  const w = state.hooks.find((h) => h.id === b.dataset.id);
  if (!w) return;
  await run(b, async () => {
    switch (b.dataset.action) {
      case 'test': {
        const event = $(`test-event-${w.id}`).value;
        const q = await api('POST', hookPath(w.id, '/test'), event ? { event } : undefined);
        say(`Test delivery ${q.deliveryId} (${q.event}) queued for ${w.url}.`);
        if (state.open === w.id) setTimeout(refreshDeliveries, 1000);
        break;
      }
      case 'deliveries':
        await openDeliveries(w.id);
        break;
      case 'edit':
        startEdit(w);
        break;
      case 'toggle': {
        const u = await api('PATCH', hookPath(w.id), { active: !w.active });
        await loadWebhooks();
        say(`${u.url} is now ${u.active ? 'active' : 'disabled'}.`);
        break;
      }
      case 'rotate': {
        if (!window.confirm(`Rotate the secret of ${w.url}? The old one keeps signing for 24 hours.`)) return;
        const r = await api('POST', hookPath(w.id, '/rotate-secret'));
        showSecret(r.secret);
        delete r.secret;
        await loadWebhooks();
        say(`New secret for ${w.url}; the old one signs too until ${when(r.previousSecretExpiresAt).textContent}.`);
        break;
      }
      case 'rotate-now': {
        // A leaked secret: no grace period, the old secret stops signing at once.
        if (!window.confirm(`Rotate the secret of ${w.url} and revoke the old one now? Deliveries signed with the old secret stop verifying at once.`)) return;
        const r = await api('POST', hookPath(w.id, '/rotate-secret'), { graceSeconds: 0 });
        showSecret(r.secret);
        delete r.secret;
        await loadWebhooks();
        say(`New secret for ${w.url}; the old one is revoked.`);
        break;
      }
      case 'delete':
        if (!window.confirm(`Delete the webhook to ${w.url}? Pending deliveries are dropped.`)) return;
        await api('DELETE', hookPath(w.id));
        if (state.open === w.id) closeDeliveries();
        if (state.editing === w.id) stopEdit();
        await loadWebhooks();
        say(`Deleted the webhook to ${w.url}.`);
        $('list-h').focus();
        break;
    }
  });
}

// ---- create / edit --------------------------------------------------------------------------

function formBody(form) {
  const f = form.elements;
  const body = {
    url: f.url.value.trim(),
    events: [...form.querySelectorAll('input[name=events]:checked')].map((c) => c.value),
    retryConfig: {
      maxRetries: Number(f.maxRetries.value),
      backoffMultiplier: Number(f.backoffMultiplier.value),
      initialDelaySeconds: Number(f.initialDelaySeconds.value),
    },
  };
  const description = f.description.value.trim();
  return {
    body, description, secret: f.secret.value, format: f.format.value,
    filter: parseFilter(f.filter.value), headers: parseHeaders(f.headers.value),
    rateLimit: f.rateLimit.value.trim() === '' ? null : Number(f.rateLimit.value),
  };
}

/** The filter textarea as JSON: `null` when empty; a clear error when it is not JSON. */
function parseFilter(text) {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`The filter is not valid JSON: ${e.message}`);
  }
}

/** `Name: value` lines as a headers object (an empty value is `null`: remove it). */
function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const at = line.indexOf(':');
    if (at < 1) throw new Error(`Custom headers: "${line.trim().slice(0, 40)}" is not "Name: value".`);
    const value = line.slice(at + 1).trim();
    out[line.slice(0, at).trim()] = value === '' ? null : value;
  }
  return out;
}

async function testFilter() {
  if (!state.editing) {
    $('filter-result').textContent = 'Save the webhook first, then edit it to test its filter.';
    return;
  }
  const f = $('webhook-form').elements;
  let sample;
  try {
    sample = JSON.parse(f.sample.value);
  } catch (e) {
    throw new Error(`The sample event is not valid JSON: ${e.message}`);
  }
  const body = { event: sample };
  const filter = parseFilter(f.filter.value);
  if (filter !== null) body.filter = filter;
  const r = await api('POST', `${hookPath(state.editing)}/filter-test`, body);
  $('filter-result').textContent = r.matches
    ? 'Matches: this event would be delivered.'
    : `No match: ${r.subscribed ? 'the filter rejects it' : 'the webhook does not subscribe to this event type'}.`;
}

async function onSubmitWebhook(ev) {
  ev.preventDefault();
  const form = ev.target;
  await run($('form-submit'), async () => {
    const { body, description, secret, format, filter, headers, rateLimit } = formBody(form);
    if (state.editing) {
      const w = state.hooks.find((h) => h.id === state.editing);
      body.description = description || null;
      if (w && 'filter' in w && JSON.stringify(filter) !== JSON.stringify(w.filter)) body.filter = filter;
      if (form.elements.clearHeaders.checked) body.headers = null;
      else if (Object.keys(headers).length) body.headers = headers;
      // Only APIs that know `format` show it on a webhook; send it only to those, when changed.
      if (w && 'format' in w && format !== w.format) body.format = format;
      // null removes the limit; sent only when changed.
      if (w && rateLimit !== (w.rateLimit ?? null)) body.rateLimit = rateLimit;
      const u = await api('PATCH', hookPath(state.editing), body);
      stopEdit();
      await loadWebhooks();
      say(`Saved the webhook to ${u.url}.`);
      const again = byAction('edit', u.id);
      if (again) again.focus();
      return;
    }
    if (!state.bucket) throw new Error('Enter a bucket id first.');
    body.bucketId = state.bucket;
    if (description) body.description = description;
    if (secret) body.secret = secret;
    if (format !== 'json') body.format = format;
    if (filter !== null) body.filter = filter;
    if (rateLimit !== null) body.rateLimit = rateLimit;
    const given = Object.entries(headers).filter(([, v]) => v !== null);
    if (given.length) body.headers = Object.fromEntries(given);
    const created = await api('POST', '/api/webhooks', body);
    form.reset();
    showSecret(created.secret);
    delete created.secret;
    await loadWebhooks();
    say(`Created the webhook to ${created.url}.`);
  });
}

function startEdit(w) {
  state.editing = w.id;
  const f = $('webhook-form').elements;
  f.url.value = w.url;
  for (const c of $('webhook-form').querySelectorAll('input[name=events]')) c.checked = w.events.includes(c.value);
  f.description.value = w.description || '';
  f.format.value = w.format || 'json';
  f.format.disabled = !('format' in w);
  f.filter.value = w.filter ? JSON.stringify(w.filter, null, 2) : '';
  f.rateLimit.value = w.rateLimit ?? '';
  f.headers.value = '';
  f.clearHeaders.checked = false;
  $('clear-headers-field').hidden = !(w.headers && w.headers.length);
  $('filter-result').textContent = '';
  f.maxRetries.value = w.retryConfig.maxRetries;
  f.backoffMultiplier.value = w.retryConfig.backoffMultiplier;
  f.initialDelaySeconds.value = w.retryConfig.initialDelaySeconds;
  $('secret-field').hidden = true;
  $('form-h').textContent = 'Edit webhook';
  $('form-submit').textContent = 'Save changes';
  $('form-cancel').hidden = false;
  f.url.focus();
}

function stopEdit() {
  const id = state.editing;
  state.editing = null;
  $('webhook-form').reset();
  $('webhook-form').elements.format.disabled = false;
  $('clear-headers-field').hidden = true;
  $('filter-result').textContent = '';
  $('secret-field').hidden = false;
  $('form-h').textContent = 'New webhook';
  $('form-submit').textContent = 'Create webhook';
  $('form-cancel').hidden = true;
  return id;
}

// ---- the one-time secret --------------------------------------------------------------------

// `back`: the heading focused when the secret is dismissed (the list's by default).
function showSecret(secret, back = 'list-h') {
  state.secretBack = back;
  $('secret-value').textContent = secret || '(the API returned no secret)';
  $('secret-panel').hidden = false;
  $('secret-h').focus();
}

function dismissSecret() {
  $('secret-value').textContent = '';
  $('secret-panel').hidden = true;
  say('The secret is hidden and no longer kept by this page.');
  $(state.secretBack || 'list-h').focus();
}

async function copySecret() {
  try {
    await navigator.clipboard.writeText($('secret-value').textContent);
    say('Secret copied to the clipboard.');
  } catch {
    showError(new Error('Could not copy: select the secret and copy it by hand.'));
  }
}

// ---- the notification endpoint (one per user: /api/notifications) --------------------------

function renderNotifications(n) {
  state.notify = n;
  $('notify-remove').hidden = !n;
  $('notify-save').textContent = n ? 'Save notification endpoint' : 'Set notification endpoint';
  if (!n) {
    $('notify-state').textContent = 'No notification endpoint is set: nobody is told when a webhook fails or is disabled.';
    $('notify-facts').replaceChildren();
    $('notify-facts').hidden = true;
    return;
  }
  $('notify-state').textContent = n.active
    ? 'Notifications are sent to this endpoint.'
    : `Disabled by the service${n.disabledReason ? `: ${n.disabledReason}` : ''}. Saving it again enables it.`;
  $('notify-facts').replaceChildren(
    el('dt', { text: 'URL' }), el('dd', { className: 'url', text: n.url }),
    el('dt', { text: 'State' }), el('dd', {}, n.active
      ? el('span', { className: 'badge on', text: 'Active' })
      : el('span', { className: 'badge off', text: 'Disabled' })),
    el('dt', { text: 'Secret' }), el('dd', { text: n.secretHint || '' }),
    el('dt', { text: 'Deliveries' }), el('dd', { text: statsText(n) }),
    el('dt', { text: 'Last delivery' }), el('dd', {}, lastDelivery(n)));
  $('notify-facts').hidden = false;
  if (!$('n-url').value) $('n-url').value = n.url;
}

// The endpoint, or null when none is set (the API answers 404).
async function loadNotifications() {
  try {
    renderNotifications(await api('GET', '/api/notifications'));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return renderNotifications(null);
    throw e;
  }
}

async function onSubmitNotifications(ev) {
  ev.preventDefault();
  await run($('notify-save'), async () => {
    const url = $('n-url').value.trim();
    const secret = $('n-secret').value;
    const body = { url };
    if (secret) body.secret = secret;
    const n = await api('PUT', '/api/notifications', body);
    $('n-secret').value = '';
    // The API answers the secret only when this request set it; one the user typed is not
    // shown back, a generated one is shown this once.
    const generated = !secret && n.secret;
    delete n.secret;
    renderNotifications(n);
    if (generated) showSecret(generated, 'notify-h');
    say(`Notifications go to ${n.url}${generated ? '; store its new signing secret now' : ''}.`);
  });
}

async function removeNotifications() {
  await run($('notify-remove'), async () => {
    const n = state.notify;
    if (!n || !window.confirm(`Stop notifications to ${n.url}? Notifications queued for it are dropped.`)) return;
    await api('DELETE', '/api/notifications');
    $('n-url').value = '';
    renderNotifications(null);
    say(`Notifications to ${n.url} are removed.`);
    $('notify-h').focus();
  });
}

// ---- deliveries and dead letters ------------------------------------------------------------

async function openDeliveries(id) {
  state.open = id;
  $('deliveries-panel').hidden = false;
  await refreshDeliveries();
  $('deliveries-h').focus();
  schedule();
}

function closeDeliveries() {
  state.open = null;
  state.shown = '';
  state.chart = '';
  clearTimeout(state.timer);
  $('deliveries-panel').hidden = true;
}

function schedule() {
  clearTimeout(state.timer);
  if (state.open && $('auto-refresh').checked) {
    state.timer = setTimeout(async () => {
      try {
        await refreshDeliveries();
      } catch (e) {
        showError(e);
        if (e.status === 401) return; // no token: stop polling until the user acts again
      }
      schedule();
    }, AUTO_REFRESH_MS);
  }
}

async function refreshDeliveries() {
  const id = state.open;
  if (!id) return;
  const [w, attempts, dead, hourly] = await Promise.all([
    api('GET', hookPath(id)),
    api('GET', hookPath(id, '/deliveries?limit=50')),
    api('GET', hookPath(id, '/dead-letters?limit=100')),
    api('GET', hookPath(id, '/stats/hourly')),
  ]);
  if (state.open !== id) return;
  const chart = JSON.stringify([id, hourly.data]);
  if (chart !== state.chart) {
    state.chart = chart;
    $('hourly-chart').replaceChildren(hourlyChart(hourly.data));
    $('hourly-summary').textContent = hourlySummary(hourly.data);
  }
  $('deliveries-url').textContent = w.url;
  $('deliveries-summary').textContent = `${statsText(w)}. Updated ${new Date().toLocaleTimeString()}.`;
  // Touch the tables only when something changed, keeping focus and opened response bodies.
  const shown = JSON.stringify([id, attempts.data, dead.data]);
  if (shown !== state.shown) {
    state.shown = shown;
    const open = new Set([...document.querySelectorAll('#attempts details[open]')].map((d) => d.dataset.key));
    keepFocus(() => {
      fillTable('attempts', attempts.data.map((a) => attemptRow(a, open)));
      fillTable('dead', dead.data.map(deadRow));
    });
  }
  $('redeliver-all').hidden = dead.data.length === 0;
  // Keep the card's stats in step, in place.
  const i = state.hooks.findIndex((h) => h.id === id);
  const c = $(`hook-${id}`);
  if (i >= 0 && c) {
    state.hooks[i] = w;
    c.querySelector('.stats').textContent = statsText(w);
    c.querySelector('.last').replaceChildren(lastDelivery(w));
  }
}

// ---- the 24 h chart: inline SVG, no library -------------------------------------------------

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function hourLabel(iso) {
  const d = new Date(iso);
  return `${String(d.getHours()).padStart(2, '0')}:00`;
}

function hourTitle(h) {
  const latency = h.latencyP50Ms == null ? '' : `, p50 ${h.latencyP50Ms} ms, p95 ${h.latencyP95Ms} ms`;
  return `${hourLabel(h.hour)}: ${h.delivered} delivered, ${h.failed} failed${latency}`;
}

// Stacked bars per hour (delivered below, failed above; left scale) and the p50/p95 latency of
// the delivering attempts as lines (right scale). Each hour's <title> gives its numbers.
function hourlyChart(hours) {
  const W = 720, H = 180, top = 12, bottom = 22, left = 36, right = 60;
  const plotW = W - left - right, plotH = H - top - bottom;
  const slot = plotW / Math.max(1, hours.length), barW = slot * 0.7;
  const maxCount = Math.max(1, ...hours.map((h) => h.delivered + h.failed));
  const maxMs = Math.max(1, ...hours.map((h) => h.latencyP95Ms ?? 0));
  const y = (n) => top + plotH - (n / maxCount) * plotH;
  const yMs = (ms) => top + plotH - (ms / maxMs) * plotH;
  const mid = (i) => left + i * slot + slot / 2;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-svg', 'aria-labelledby': 'hourly-title hourly-summary' },
    svg('title', { id: 'hourly-title' }, 'Deliveries per hour by outcome, and delivering-attempt latency, over the last 24 hours'),
    svg('line', { class: 'axis', x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH }),
    svg('text', { class: 'tick end', x: left - 4, y: top + 4 }, String(maxCount)),
    svg('text', { class: 'tick end', x: left - 4, y: top + plotH }, '0'),
    svg('text', { class: 'tick', x: left + plotW + 4, y: top + 4 }, `${maxMs} ms`));
  hours.forEach((h, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const g = svg('g', { class: 'hour' }, svg('title', {}, hourTitle(h)),
      svg('rect', { class: 'slot', x: left + i * slot, y: top, width: slot, height: plotH }));
    if (h.delivered) g.append(svg('rect', { class: 'delivered', x, y: y(h.delivered), width: barW, height: y(0) - y(h.delivered) }));
    if (h.failed) {
      const total = h.delivered + h.failed;
      g.append(svg('rect', { class: 'failed', x, y: y(total), width: barW, height: y(h.delivered) - y(total) }));
    }
    root.append(g);
    if (i % 6 === 0 || i === hours.length - 1) root.append(svg('text', { class: 'tick middle', x: mid(i), y: H - 6 }, hourLabel(h.hour)));
  });
  // One line per run of hours that have a latency (an hour with none breaks it).
  for (const [key, cls] of [['latencyP50Ms', 'p50'], ['latencyP95Ms', 'p95']]) {
    let run = [];
    const flush = () => {
      if (run.length === 1) root.append(svg('circle', { class: `dot ${cls}`, cx: run[0][0], cy: run[0][1], r: 3 }));
      if (run.length > 1) root.append(svg('polyline', { class: `line ${cls}`, points: run.map((p) => p.join(',')).join(' ') }));
      run = [];
    };
    hours.forEach((h, i) => {
      if (h[key] == null) flush();
      else run.push([mid(i).toFixed(1), yMs(h[key]).toFixed(1)]);
    });
    flush();
  }
  return root;
}

function hourlySummary(hours) {
  const delivered = hours.reduce((s, h) => s + h.delivered, 0);
  const failed = hours.reduce((s, h) => s + h.failed, 0);
  const p95 = Math.max(0, ...hours.map((h) => h.latencyP95Ms ?? 0));
  const latency = delivered ? `; p95 latency up to ${p95} ms` : '';
  return `Last 24 h: ${delivered} delivered, ${failed} failed${latency}.`;
}

function fillTable(id, rows) {
  $(id).querySelector('tbody').replaceChildren(...rows);
  $(id).hidden = rows.length === 0;
  $(`${id === 'attempts' ? 'attempts' : 'dead'}-empty`).hidden = rows.length > 0;
}

const td = (label, ...content) => el('td', { 'data-label': label }, ...content);

function attemptRow(a, open) {
  const key = `${a.deliveryId}:${a.generation}:${a.attempt}`;
  const body = a.responseBody
    ? el('details', { open: open.has(key), dataset: { key } },
      el('summary', { dataset: { action: 'body', id: key }, text: 'Response body' }), el('pre', { text: a.responseBody }))
    : null;
  const details = el('div', {},
    el('div', { className: 'mono small', text: `delivery ${a.deliveryId}` }),
    a.error ? el('div', { className: 'err', text: a.error }) : null, body);
  return el('tr', { className: `attempt ${a.status}` },
    td('When', when(a.at)), td('Event', a.event), td('Attempt', String(a.attempt)),
    td('Status', el('span', { className: `badge ${a.status === 'success' ? 'on' : 'off'}`, text: a.status })),
    td('Code', a.statusCode == null ? '—' : String(a.statusCode)),
    td('Duration', `${a.durationMs} ms`), td('Details', details));
}

function deadRow(d) {
  const b = el('button', { type: 'button', className: 'secondary', dataset: { action: 'redeliver', id: d.deliveryId }, text: 'Redeliver' });
  return el('tr', {},
    td('When', when(d.at)), td('Event', d.event), td('Attempts', String(d.attempts)),
    td('Error', el('span', { className: 'err', text: d.error })),
    td('Delivery id', el('span', { className: 'mono small', text: d.deliveryId })),
    td('Action', b));
}

async function onDeadClick(ev) {
  const b = ev.target.closest('button[data-action=redeliver]');
  if (!b || !state.open) return;
  await run(b, async () => {
    await api('POST', hookPath(state.open, `/deliveries/${encodeURIComponent(b.dataset.id)}/redeliver`));
    say(`Delivery ${b.dataset.id} queued again.`);
    await refreshDeliveries();
  });
}

async function redeliverAll() {
  await run($('redeliver-all'), async () => {
    const r = await api('POST', hookPath(state.open, '/deliveries/redeliver'));
    say(`${r.deliveries.length} dead letter(s) queued again.`);
    await refreshDeliveries();
  });
}

// ---- wiring ---------------------------------------------------------------------------------

async function selectBucket(b) {
  state.bucket = b;
  $('bucket').value = b;
  rememberBucket(b);
  closeDeliveries();
  await loadWebhooks();
  say(`${state.hooks.length} webhook(s) in bucket ${b}.`);
}

function init() {
  showTokenState();
  showRecentBuckets();
  // The development token exists in the local mode only.
  fetch('/dashboard/dev-token', { method: 'HEAD' })
    .then((r) => { $('dev-token').hidden = !r.ok; })
    .catch(() => {});

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim().replace(/^Bearer\s+/i, '');
    $('token').value = '';
    if (!t) return showError(new Error('Paste a token first.'));
    setToken(t);
    clearError();
    say('Token set.');
    run(null, async () => {
      await loadNotifications();
      if (state.bucket) await loadWebhooks();
    });
  });
  $('dev-token').addEventListener('click', (ev) => run(ev.currentTarget, async () => {
    const r = await fetch('/dashboard/dev-token');
    if (!r.ok) throw new Error('No development token here (it exists in the local mode only).');
    setToken((await r.json()).token);
    say('Using the development token (user dev-user).');
    await loadNotifications();
    if (state.bucket) await loadWebhooks();
  }));
  $('forget-token').addEventListener('click', () => {
    setToken(null);
    state.notify = null;
    $('notify-facts').replaceChildren();
    $('notify-facts').hidden = true;
    $('notify-remove').hidden = true;
    $('notify-state').textContent = 'Sign in to see your notification endpoint.';
    say('Token forgotten.');
  });

  $('bucket-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const b = $('bucket').value.trim().toLowerCase();
    run(ev.submitter, () => selectBucket(b));
  });
  $('refresh-list').addEventListener('click', (ev) => run(ev.currentTarget, async () => {
    if (!state.bucket) throw new Error('Enter a bucket id first.');
    await loadWebhooks();
    say('List refreshed.');
  }));
  $('webhooks').addEventListener('click', onListClick);
  $('webhook-form').addEventListener('submit', onSubmitWebhook);
  $('filter-test').addEventListener('click', (ev) => run(ev.currentTarget, testFilter));
  $('form-cancel').addEventListener('click', () => {
    const id = stopEdit();
    const b = id && byAction('edit', id);
    if (b) b.focus();
  });
  $('dismiss-secret').addEventListener('click', dismissSecret);
  $('copy-secret').addEventListener('click', copySecret);
  $('refresh-deliveries').addEventListener('click', (ev) => run(ev.currentTarget, async () => {
    await refreshDeliveries();
    say('Deliveries refreshed.');
  }));
  $('auto-refresh').addEventListener('change', schedule);
  $('close-deliveries').addEventListener('click', () => {
    const id = state.open;
    closeDeliveries();
    const b = byAction('deliveries', id);
    if (b) b.focus();
  });
  $('dead').addEventListener('click', onDeadClick);
  $('redeliver-all').addEventListener('click', redeliverAll);
  $('notify-form').addEventListener('submit', onSubmitNotifications);
  $('notify-remove').addEventListener('click', removeNotifications);

  if (token()) run(null, loadNotifications);

  const recent = recentBuckets()[0];
  if (recent) {
    $('bucket').value = recent;
    if (token()) run(null, () => selectBucket(recent));
  }
}

document.addEventListener('DOMContentLoaded', init);
