// The bus's CloudEvents 1.0 binding, checked with the CloudEvents JavaScript SDK (`cloudevents`
// on npm), not with a parser of our own: events the SDK builds in structured, binary and batch
// mode are accepted, and what the bus emits (the publish answer, `GET /v1/events/{id}`, the query
// API, an SSE message with `format=cloudevents`, a webhook request in structured and in binary
// mode) parses back with the SDK into equal events. Webhook signatures are checked with the
// Standard Webhooks library (`standardwebhooks` on npm).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { CloudEvent, HTTP } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { ADMIN_KEY, startBus, stopBus } from './harness.mjs';

const auth = { authorization: `Bearer ${ADMIN_KEY}` };
let bus;

before(async () => {
  bus = await startBus({ WEBHOOK_ALLOWED_NETWORKS: '127.0.0.0/8' });
});
after(async () => {
  if (bus) await stopBus(bus);
});

/** An SDK event with every attribute the mapping names, and an extension of our own. */
function sample(n, extra = {}) {
  return new CloudEvent({
    specversion: '1.0',
    id: `ce-${n}-${Math.random().toString(36).slice(2)}`,
    source: 'https://crm.example.com/projects',
    type: 'project.updated',
    time: new Date(Date.UTC(2026, 0, 2, 3, 4, 5, n)).toISOString(),
    subject: `projects/p-${n}`,
    datacontenttype: 'application/json',
    data: { n, name: 'Alpha', tags: ['a', 'b'], nested: { ok: true } },
    projectid: 'p1',
    tenantid: 't1',
    userid: 'u1',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    correlationid: `corr-${n}`,
    region: 'eu-west',
    ...extra,
  });
}

/** The HTTP response as the SDK's Message. */
async function message(resp) {
  return { headers: Object.fromEntries(resp.headers), body: await resp.text() };
}

/** The SDK event `sent` as the bus stores it: the same, plus the `seq` extension. */
function stored(sent, seq) {
  assert.ok(Number.isInteger(seq) && seq > 0, `a seq: ${seq}`);
  return sent.cloneWith({ seq });
}

function assertSame(got, want) {
  assert.ok(got instanceof CloudEvent, `a CloudEvent: ${got}`);
  assert.deepEqual(got.toJSON(), want.toJSON());
}

async function post(msg, extraHeaders = {}) {
  return fetch(`${bus.url}/v1/events`, {
    method: 'POST',
    headers: { ...msg.headers, ...auth, ...extraHeaders },
    body: msg.body,
  });
}

test('a structured event is accepted and answered as a structured event', async () => {
  const sent = sample(1);
  const resp = await post(HTTP.structured(sent));
  assert.equal(resp.status, 201);
  assert.match(resp.headers.get('content-type'), /^application\/cloudevents\+json/);
  const got = HTTP.toEvent(await message(resp));
  assertSame(got, stored(sent, got.seq));

  // Our JSON view of the same event: the documented mapping.
  const plain = await (await fetch(`${bus.url}/v1/events/${sent.id}`, { headers: auth })).json();
  assert.equal(plain.type, sent.type);
  assert.equal(plain.timestamp, sent.time);
  assert.deepEqual(plain.payload, sent.data);
  assert.equal(plain.projectId, 'p1');
  assert.equal(plain.tenantId, 't1');
  assert.equal(plain.userId, 'u1');
  assert.deepEqual(plain.metadata, {
    source: sent.source,
    subject: sent.subject,
    traceparent: sent.traceparent,
    correlationId: sent.correlationid,
    region: 'eu-west',
  });
});

test('a binary event is accepted and GET /v1/events/{id} answers it as a CloudEvent', async () => {
  const sent = sample(2);
  const resp = await post(HTTP.binary(sent));
  assert.equal(resp.status, 201, await resp.clone().text());
  const answered = HTTP.toEvent(await message(resp));
  assertSame(answered, stored(sent, answered.seq));

  const got = await fetch(`${bus.url}/v1/events/${sent.id}`, {
    headers: { ...auth, accept: 'application/cloudevents+json' },
  });
  assert.equal(got.status, 200);
  assertSame(HTTP.toEvent(await message(got)), stored(sent, answered.seq));
});

test('a batch is stored atomically and the query API answers a batch', async () => {
  const sent = [sample(3, { projectid: 'p-batch' }), sample(4, { projectid: 'p-batch' })];
  const resp = await post({
    headers: { 'content-type': 'application/cloudevents-batch+json' },
    body: JSON.stringify(sent),
  });
  assert.equal(resp.status, 201, await resp.clone().text());
  const answered = HTTP.toEvent(await message(resp));
  assert.ok(Array.isArray(answered));
  assert.equal(answered.length, 2);
  answered.forEach((e, i) => assertSame(e, stored(sent[i], e.seq)));

  // A batch with one bad event stores nothing, and the problem names the attribute.
  const bad = JSON.stringify([sample(5, { projectid: 'p-batch' }), { ...sample(6).toJSON(), source: undefined }]);
  const refused = await post({ headers: { 'content-type': 'application/cloudevents-batch+json' }, body: bad });
  assert.equal(refused.status, 400);
  const problem = await refused.json();
  assert.equal(problem.errors[0].field, '1/source');

  for (const url of [`${bus.url}/v1/events?projectId=p-batch`, `${bus.url}/v1/projects/p-batch/events`]) {
    const page = await fetch(url, { headers: { ...auth, accept: 'application/cloudevents-batch+json' } });
    assert.equal(page.status, 200);
    const events = HTTP.toEvent(await message(page));
    assert.equal(events.length, 2, 'the refused batch stored nothing');
    events.forEach((e, i) => assertSame(e, stored(sent[i], answered[i].seq)));
  }
});

test('an SSE stream with format=cloudevents carries structured events', async () => {
  const sent = [sample(7, { projectid: 'p-sse' }), sample(8, { projectid: 'p-sse' })];
  const seqs = [];
  for (const e of sent) {
    const resp = await post(HTTP.binary(e));
    assert.equal(resp.status, 201);
    seqs.push(HTTP.toEvent(await message(resp)).seq);
  }
  const abort = new AbortController();
  const resp = await fetch(`${bus.url}/v1/stream?projectId=p-sse&format=cloudevents&lastEventId=0`, {
    headers: auth,
    signal: abort.signal,
  });
  assert.equal(resp.status, 200);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const frames = [];
  const deadline = setTimeout(() => abort.abort(), 20_000);
  while (frames.length < sent.length) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    let end;
    while ((end = text.indexOf('\n\n')) >= 0) {
      const frame = text.slice(0, end);
      text = text.slice(end + 2);
      const data = frame.split('\n').find((l) => l.startsWith('data: '));
      const id = frame.split('\n').find((l) => l.startsWith('id: '));
      if (data && id) frames.push({ id: Number(id.slice(4)), data: data.slice(6) });
    }
  }
  clearTimeout(deadline);
  abort.abort();
  assert.equal(frames.length, sent.length);
  frames.forEach((f, i) => {
    assert.equal(f.id, seqs[i], 'the SSE id is still the seq');
    const got = HTTP.toEvent({ headers: { 'content-type': 'application/cloudevents+json' }, body: f.data });
    assertSame(got, stored(sent[i], seqs[i]));
  });
});

test('invalid CloudEvents are problems naming the attribute', async () => {
  const noType = HTTP.binary(sample(9));
  delete noType.headers['ce-type'];
  const r1 = await post(noType);
  assert.equal(r1.status, 400);
  assert.equal((await r1.json()).errors[0].field, 'ce-type');

  const old = { ...sample(10).toJSON(), specversion: '0.3' };
  const r2 = await post({ headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(old) });
  assert.equal(r2.status, 400);
  const p2 = await r2.json();
  assert.equal(p2.type, '/problems/invalid-field');
  assert.equal(p2.errors[0].field, 'specversion');
});

test('Expected-Last-Seq applies to CloudEvents publishes', async () => {
  const first = await post(HTTP.structured(sample(11, { projectid: 'p-occ' })), { 'expected-last-seq': '0' });
  assert.equal(first.status, 201);
  const seq = HTTP.toEvent(await message(first)).seq;
  const stale = await post(HTTP.binary(sample(12, { projectid: 'p-occ' })), { 'expected-last-seq': '0' });
  assert.equal(stale.status, 409);
  const problem = await stale.json();
  assert.equal(problem.type, '/problems/wrong-expected-seq');
  assert.equal(problem.lastSeq, seq);
});

/** A local webhook receiver: resolves each request as { headers, body } in arrival order. */
function receiver() {
  const requests = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      res.writeHead(200).end();
      const r = { url: req.url, headers: req.headers, body };
      const w = waiters.shift();
      if (w) w(r);
      else requests.push(r);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        next: () => (requests.length ? Promise.resolve(requests.shift()) : new Promise((r) => waiters.push(r))),
        close: () => server.close(),
      }),
    );
  });
}

test('webhooks in CloudEvents structured and binary mode parse back, signed per Standard Webhooks', async () => {
  const rx = await receiver();
  try {
    const endpoints = {};
    for (const format of ['cloudevents', 'cloudevents-binary']) {
      const r = await fetch(`${bus.url}/v1/webhooks`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ url: `${rx.url}/${format}`, projectId: 'p-wh', format }),
      });
      assert.equal(r.status, 201, await r.clone().text());
      const ep = await r.json();
      assert.equal(ep.format, format);
      endpoints[format] = ep;
    }
    const sent = sample(13, { projectid: 'p-wh' });
    const published = await post(HTTP.structured(sent));
    assert.equal(published.status, 201);
    const seq = HTTP.toEvent(await message(published)).seq;

    const got = {};
    for (let i = 0; i < 2; i++) {
      const req = await Promise.race([
        rx.next(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no webhook request within 20 s')), 20_000)),
      ]);
      got[req.url.slice(1)] = req;
    }
    for (const [format, req] of Object.entries(got)) {
      const ep = endpoints[format];
      // Signed over the exact body, with the event id as webhook-id.
      new Webhook(ep.secret).verify(req.body, req.headers);
      assert.equal(req.headers['webhook-id'], sent.id);
      const event = HTTP.toEvent({ headers: req.headers, body: req.body });
      if (format === 'cloudevents') {
        assert.match(req.headers['content-type'], /^application\/cloudevents\+json/);
        assertSame(event, stored(sent, seq));
      } else {
        assert.equal(req.headers['ce-id'], sent.id);
        assert.equal(req.headers['content-type'], 'application/json');
        // In binary mode every attribute travels as a header string (the seq too).
        assertSame(event, sent.cloneWith({ seq: String(seq) }));
      }
    }
    // A format that does not exist is refused, naming the field.
    const bad = await fetch(`${bus.url}/v1/webhooks`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${rx.url}/x`, format: 'xml' }),
    });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).errors[0].field, 'format');
  } finally {
    rx.close();
  }
});
