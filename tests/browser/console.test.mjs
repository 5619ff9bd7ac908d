// The console at GET /console, in Debian's Chromium against the real binary: sign in with a key,
// see a published event in the live tail, filter it, open its detail, find it in search, make a
// webhook endpoint fail and retry its delivery from the page, see a consumer's dead letter and
// retry it; a key of tenant A sees nothing of tenant B. Screenshots of every view, on a laptop
// screen and 390 px wide, go to docs/console/.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { ADMIN_KEY, killBus, launchChromium, publish, startBus } from './harness.mjs';

const SHOTS = path.resolve(import.meta.dirname, '../../docs/console');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

let bus;
let busEnv;
let browser;
/** What the pages threw: every test ends with none. */
const pageErrors = [];
afterEach(() => assert.deepEqual(pageErrors.splice(0).map(String), [], 'a page threw'));
let receiver;
const keys = {};

/** A webhook receiver on loopback whose answer the test sets; it counts what it got. */
function startReceiver() {
  const state = { status: 500, requests: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      state.requests.push({ id: req.headers['webhook-id'], body });
      res.writeHead(state.status, { 'content-type': 'text/plain' });
      res.end(state.status === 200 ? 'ok' : 'receiver is down for maintenance');
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ state, url: `http://127.0.0.1:${server.address().port}/hook`, close: () => server.close() })),
  );
}

async function call(method, route, body, key = ADMIN_KEY) {
  const r = await fetch(`${bus.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${route} answered ${r.status}: ${text}`);
  return text ? JSON.parse(text) : undefined;
}

/** A new tab signed in with `key`, on `viewport`. */
async function signedIn(key, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  cleanup.push(() => context.close());
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e));
  await page.goto(`${bus.url}/console`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  return page;
}

/** The row of the tail's list, or of a table, whose `seq` cell is exactly `seq`. */
function bySeq(page, scope, seq) {
  return scope.filter({ has: page.locator('.seq', { hasText: new RegExp(`^${seq}$`) }) });
}

async function view(page, hash) {
  await page.goto(`${bus.url}/console#/${hash}`);
}

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: !name.endsWith('-390') && !name.startsWith('tail') });
}

before(async () => {
  receiver = await startReceiver();
  cleanup.push(() => receiver.close());
  // One plugin from examples/, copied: the plugin table has a row to show.
  const plugins = mkdtempSync(path.join(tmpdir(), 'console-plugins-'));
  cpSync(path.resolve(import.meta.dirname, '../../examples/plugins/audit'), path.join(plugins, 'audit'), { recursive: true });
  // And one that does not load: the table shows it failed, with its error.
  mkdirSync(path.join(plugins, 'broken'));
  writeFileSync(
    path.join(plugins, 'broken', 'plugin.json'),
    JSON.stringify({ name: 'broken', version: '0.1.0', subscribe: ['project.*'], limits: { memoryMb: 16, timeoutMs: 100 } }),
  );
  writeFileSync(path.join(plugins, 'broken', 'index.js'), 'export function onEvent( {\n');
  busEnv = {
    PLUGINS_DIR: plugins,
    WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8',
    WEBHOOK_RETRY_ATTEMPTS: '0',
    STATS_SAMPLE_INTERVAL: '1',
  };
  bus = await startBus({ env: busEnv });
  cleanup.push(() => killBus(bus));
  browser = await launchChromium();
  cleanup.push(() => browser.close());
  for (const tenant of ['a', 'b']) {
    keys[tenant] = (
      await call('POST', '/v1/keys', { name: `tenant-${tenant}`, tenantId: `t_${tenant}`, permissions: ['publish', 'read', 'subscribe'] })
    ).key;
  }
  await call('PUT', '/v1/event-types/project.created', {
    description: 'A project was created',
    schema: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
  });
});

test('sign in: a wrong key is refused on the page, a right one opens the console', async () => {
  const context = await browser.newContext({ viewport: DESKTOP });
  cleanup.push(() => context.close());
  const page = await context.newPage();
  await page.goto(`${bus.url}/console`);
  await shot(page, 'sign-in');
  await page.getByLabel('API key').fill('ebk_not_a_key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This key is not accepted').waitFor();
  await page.getByLabel('API key').fill(ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  // The key is in this tab's sessionStorage, never in the URL.
  assert.ok(!page.url().includes(ADMIN_KEY));
  assert.equal(await page.evaluate(() => Object.values(sessionStorage).includes('browser-test-admin-key-0123456789')), true);
});

test('live tail: a published event appears, the filter narrows it, its detail shows JSON, metadata and trace id', async () => {
  const page = await signedIn(ADMIN_KEY);
  await view(page, 'tail');
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const sent = Date.now();
  const event = await publish(bus.url, {
    type: 'project.created',
    payload: { name: 'Console launch' },
    projectId: 'p_console',
    tenantId: 't_a',
    metadata: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', source: 'browser-test' },
  });
  const row = bySeq(page, page.getByRole('listitem'), event.seq);
  await row.waitFor({ timeout: 10_000 });
  console.log(`live tail: the event was on the page ${Date.now() - sent} ms after the publish was sent`);

  // Filter: only user.* from now on; a project event no longer shows, a user event does.
  await page.getByLabel('Types').fill('user.*');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Waiting for events of user.*').waitFor();
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const other = await publish(bus.url, { type: 'project.created', payload: { name: 'hidden' }, tenantId: 't_a' });
  const user = await publish(bus.url, { type: 'user.deleted', payload: { id: 'u1' }, tenantId: 't_a', userId: 'u1' });
  await bySeq(page, page.getByRole('listitem'), user.seq).waitFor();
  assert.equal(await bySeq(page, page.getByRole('listitem'), other.seq).count(), 0, 'the filtered-out event is not listed');
  await page.getByLabel('Types').fill('project.created');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const shown = await publish(bus.url, {
    type: 'project.created',
    payload: { name: 'Shown' },
    projectId: 'p_console',
    tenantId: 't_a',
    metadata: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
  });
  await bySeq(page, page.getByRole('listitem'), shown.seq).click();
  const detail = page.getByRole('complementary', { name: 'event detail' });
  await detail.getByText(shown.id, { exact: true }).waitFor();
  await detail.getByText('0af7651916cd43dd8448eb211c80319c', { exact: true }).waitFor();
  assert.match(await detail.locator('pre.json').first().innerText(), /"name": "Shown"/);
  await shot(page, 'tail-detail');
  // Pause keeps the list still while events go on arriving.
  await detail.getByRole('button', { name: 'close' }).click();
  await page.getByRole('button', { name: 'Pause' }).click();
  const during = await publish(bus.url, { type: 'project.created', payload: { name: 'during pause' }, tenantId: 't_a' });
  await page.getByRole('button', { name: 'Resume (1 new)' }).waitFor();
  assert.equal(await bySeq(page, page.getByRole('listitem'), during.seq).count(), 0);
  await page.getByRole('button', { name: /Resume/ }).click();
  await bySeq(page, page.getByRole('listitem'), during.seq).waitFor();
  await shot(page, 'tail');
});

test('search finds an event by id and by pattern, pages with the cursor, and opens its detail', async () => {
  const page = await signedIn(ADMIN_KEY);
  for (let i = 0; i < 60; i++) await publish(bus.url, { type: 'menu.item_updated', payload: { item: i }, tenantId: 't_a', projectId: 'p_menu' });
  const target = await publish(bus.url, { type: 'integration.status_changed', payload: { status: 'down' }, tenantId: 't_a' });
  await view(page, 'search');
  await page.getByLabel('Event id').fill(target.id);
  await page.getByRole('button', { name: 'Search' }).click();
  const results = page.getByRole('table', { name: 'search results' });
  await bySeq(page, results.locator('tbody tr'), target.seq).waitFor();
  assert.equal(await results.locator('tbody tr').count(), 1);
  await results.locator('tbody tr').first().click();
  await page.getByRole('complementary', { name: 'event detail' }).getByText(target.id, { exact: true }).waitFor();
  await page.getByRole('button', { name: 'close' }).click();

  await page.getByLabel('Event id').fill('');
  await page.getByLabel('Types').fill('menu.>');
  await page.getByLabel('Project').fill('p_menu');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('Page 1').waitFor();
  assert.equal(await results.locator('tbody tr').count(), 50);
  await shot(page, 'search');
  await page.getByRole('button', { name: 'Next →' }).click();
  await page.getByText('Page 2').waitFor();
  await results.locator('tbody tr').nth(9).waitFor();
  assert.equal(await results.locator('tbody tr').count(), 10);
  assert.equal(await page.getByRole('button', { name: 'Next →' }).isDisabled(), true);
});

test('event types: the catalogue with a count per type and its schema', async () => {
  const page = await signedIn(ADMIN_KEY);
  await view(page, 'types');
  const table = page.getByRole('table', { name: 'event types' });
  const row = table.locator('tr', { hasText: 'project.created' }).first();
  await row.waitFor();
  const counts = await call('GET', '/v1/event-types/counts');
  const expected = counts.counts.find((c) => c.type === 'project.created').count;
  assert.ok(expected >= 4);
  assert.equal((await row.locator('td.num').innerText()).replace(/\D/g, ''), String(expected));
  await row.getByRole('button', { name: 'Show' }).click();
  await table.getByText('"required"').waitFor();
  await shot(page, 'event-types');
});

test('webhooks: a failing endpoint shows its failed delivery; Retry from the page delivers it once the endpoint answers', async () => {
  const endpoint = await call('POST', '/v1/webhooks', { url: receiver.url, description: 'CRM sync', eventTypes: ['billing.>'] });
  const event = await publish(bus.url, { type: 'billing.invoice_failed', payload: { invoice: 'inv_1' }, tenantId: 't_a' });
  const page = await signedIn(ADMIN_KEY);
  await view(page, `webhooks/${endpoint.id}`);
  const panel = page.getByRole('article', { name: 'endpoint detail' });
  const deliveries = panel.getByRole('table', { name: 'deliveries' });
  // No retries are configured: the one failed attempt makes the delivery `failed`.
  const failed = bySeq(page, deliveries.locator('tr', { hasText: 'failed' }), event.seq);
  // The page refreshes its delivery log by itself.
  await failed.waitFor({ timeout: 15_000 });
  await panel.getByText('receiver is down for maintenance').first().waitFor();
  await panel.getByTestId('success-rate').filter({ hasText: '0.0 %' }).waitFor();
  await shot(page, 'webhooks');
  receiver.state.status = 200;
  const before = receiver.state.requests.length;
  await failed.getByRole('button', { name: 'Retry' }).click();
  await bySeq(page, deliveries.locator('tr', { hasText: 'succeeded' }), event.seq).waitFor({ timeout: 15_000 });
  assert.ok(receiver.state.requests.length > before, 'the retry reached the receiver');
  const ids = new Set(receiver.state.requests.map((r) => r.id));
  assert.equal(ids.size, 1, 'the retry carries the same webhook-id');
  await panel.getByTestId('success-rate').filter({ hasText: '50.0 %' }).waitFor();

  // Replay a range of one event: delivered once more, under the same webhook-id.
  const sent = receiver.state.requests.length;
  await panel.getByLabel('replay since').fill(String(event.seq));
  await panel.getByLabel('replay until').fill(String(event.seq));
  await panel.getByRole('button', { name: 'Replay' }).click();
  await panel.getByText('Queued 1 delivery').waitFor();
  for (let i = 0; receiver.state.requests.length === sent; i++) {
    assert.ok(i < 100, 'the replay did not reach the receiver within 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(receiver.state.requests.at(-1).id, receiver.state.requests[0].id);
});

test('consumers: a dead letter is listed and Retry makes it a message again', async () => {
  await call('PUT', '/v1/consumers/invoice-mailer', { types: ['invoice.>'], startAt: 'new', maxDeliver: 1 });
  const event = await publish(bus.url, { type: 'invoice.sent', payload: { invoice: 'inv_2' }, tenantId: 't_a' });
  const { messages } = await call('POST', '/v1/consumers/invoice-mailer/fetch', { max: 10, waitMs: 5000 });
  assert.equal(messages.length, 1);
  await call('POST', '/v1/consumers/invoice-mailer/nack', { ackIds: [messages[0].ackId] });
  const page = await signedIn(ADMIN_KEY);
  await view(page, 'consumers');
  const table = page.getByRole('table', { name: 'consumer groups' });
  await table.locator('tr', { hasText: 'invoice-mailer' }).click();
  const letter = table.locator('li', { hasText: 'invoice.sent' });
  await letter.waitFor();
  assert.match(await letter.innerText(), new RegExp(`seq ${event.seq}`));
  const plugins = page.getByRole('table', { name: 'plugins' });
  await plugins.locator('tr', { hasText: 'audit' }).getByText('running').waitFor();
  const broken = plugins.locator('tr', { hasText: 'broken' });
  await broken.getByText('failed').waitFor();
  assert.ok((await broken.locator('td.ellipsis').innerText()).length > 0, 'the failed plugin shows its error');
  await shot(page, 'consumers');
  await letter.getByRole('button', { name: 'Retry' }).click();
  await letter.getByText('retried').waitFor();
  const again = await call('POST', '/v1/consumers/invoice-mailer/fetch', { max: 10, waitMs: 5000 });
  assert.equal(again.messages[0]?.event.id, event.id, 'the retried dead letter is handed out again');
  const letters = await call('GET', '/v1/consumers/invoice-mailer/dead-letters');
  assert.equal(letters.deadLetters.length, 0);
});

test('overview: rolled-up figures of the last hour and the readiness entries', async () => {
  const page = await signedIn(ADMIN_KEY);
  await view(page, 'overview');
  await page.getByTestId('ready').filter({ hasText: 'ready' }).waitFor();
  await page.getByText('store up').first().waitFor();
  await page.getByRole('img', { name: 'Events per second' }).waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[data-testid=events-last-hour]')?.textContent?.replace(/\D/g, '')) >= 60, null, {
    timeout: 15_000,
  });
  await shot(page, 'overview');
});

test('a key of tenant A sees nothing of tenant B, and the page says what it may not see', async () => {
  const page = await signedIn(keys.a);
  await view(page, 'tail');
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const b = await publish(bus.url, { type: 'project.created', payload: { name: 'B secret' }, tenantId: 't_b' }, keys.b);
  const a = await publish(bus.url, { type: 'project.created', payload: { name: 'A own' }, tenantId: 't_a' }, keys.a);
  await bySeq(page, page.getByRole('listitem'), a.seq).waitFor();
  assert.equal(await bySeq(page, page.getByRole('listitem'), b.seq).count(), 0, 'tenant B event in the tail');

  await view(page, 'search');
  await page.getByLabel('Event id').fill(b.id);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText('No hot event has this id').waitFor();
  await page.getByLabel('Event id').fill('');
  await page.getByLabel('Tenant').fill('t_b');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.locator('[role=alert][data-status="403"]').getByText('This key may not see this').waitFor();
  assert.equal(await page.getByRole('table', { name: 'search results' }).count(), 0);
  // Everything it may search holds tenant A's events only.
  await page.getByLabel('Tenant').fill('');
  await page.getByRole('button', { name: 'Search' }).click();
  const rows = page.getByRole('table', { name: 'search results' }).locator('tbody tr');
  await rows.first().waitFor();
  const tenants = await rows.evaluateAll((trs) => trs.map((tr) => tr.children[4]?.textContent));
  assert.ok(tenants.length > 0 && tenants.every((t) => t === 't_a'), `tenants listed: ${[...new Set(tenants)]}`);
  assert.equal(await bySeq(page, rows, b.seq).count(), 0);

  await view(page, 'webhooks');
  await page.getByText('No webhook endpoint is visible to this key.').waitFor();

  await view(page, 'overview');
  await page.getByText('This key may not see this').first().waitFor();
  await view(page, 'consumers');
  await page.getByText('No consumer group is visible to this key.').waitFor();
  await page.getByText('This key may not see this').waitFor();
  await view(page, 'types');
  const table = page.getByRole('table', { name: 'event types' });
  await table.locator('tr', { hasText: 'project.created' }).first().waitFor();
  const counts = await call('GET', '/v1/event-types/counts', undefined, keys.a);
  const own = counts.counts.find((c) => c.type === 'project.created').count;
  const all = (await call('GET', '/v1/event-types/counts')).counts.find((c) => c.type === 'project.created').count;
  assert.ok(own < all, `tenant A counts ${own} of ${all}`);
  assert.equal((await table.locator('tr', { hasText: 'project.created' }).first().locator('td.num').innerText()).replace(/\D/g, ''), String(own));
});

test('live tail: when the bus restarts, the page reconnects and resumes after its last event, every event once', async () => {
  const page = await signedIn(ADMIN_KEY);
  await view(page, 'tail');
  await page.getByLabel('Types').fill('project.updated');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const rows = page.getByRole('listitem');
  const first = await publish(bus.url, { type: 'project.updated', payload: { n: 1 }, tenantId: 't_a' });
  await bySeq(page, rows, first.seq).waitFor();

  await killBus(bus);
  await page.getByTestId('stream-status').filter({ hasText: /connecting/ }).waitFor();
  bus = await startBus({ dir: bus.dir, port: bus.port, env: busEnv });
  // Published before the page is back (it waits at least 250 ms between attempts): the resume
  // replays it from the page's last seq; the one after arrives live.
  const second = await publish(bus.url, { type: 'project.updated', payload: { n: 2 }, tenantId: 't_a' });
  await page.getByTestId('stream-status').filter({ hasText: 'live' }).waitFor();
  const third = await publish(bus.url, { type: 'project.updated', payload: { n: 3 }, tenantId: 't_a' });
  await bySeq(page, rows, third.seq).waitFor();
  for (const e of [first, second, third]) assert.equal(await bySeq(page, rows, e.seq).count(), 1, `seq ${e.seq} once`);
  assert.equal(await rows.count(), 3, 'nothing else, nothing twice');
});

test('every view at 390 px wide', async () => {
  const page = await signedIn(ADMIN_KEY, PHONE);
  for (const name of ['overview', 'tail', 'search', 'types', 'webhooks', 'consumers']) {
    await view(page, name);
    await page.locator('main h1').waitFor();
    await page.waitForLoadState('networkidle').catch(() => undefined);
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} is ${overflow} px wider than the screen`);
    await shot(page, `${name}-390`);
  }
  await page.getByRole('button', { name: /☰/ }).click();
  await shot(page, 'menu-390');
});
