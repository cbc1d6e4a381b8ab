// The web client in a real browser against a real `roomring dev`: two tabs
// chat, see each other online, typing and read receipts, and the client
// resumes after its socket drops.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDev, enterChat } from './dev.mjs';

const shots = process.env.SCREENSHOTS;
let dev;
let base;
let browser;

before(async () => {
  dev = await startDev([]);
  ({ base, browser } = dev);
});

after(async () => {
  await dev?.stop();
});

function enter(name, room) {
  return enterChat(browser, base, name, room);
}

test('two tabs chat with presence, typing and read receipts', async () => {
  const ann = await enter('ann', 'chat:browser');
  const bob = await enter('bob', 'chat:browser');
  await ann.waitForFunction(() => document.querySelector('#online').textContent.includes('bob'));
  await bob.waitForFunction(() => document.querySelector('#online').textContent.includes('ann'));

  await ann.type('#text', 'hel');
  await bob.waitForFunction(() => document.querySelector('#typing').textContent.includes('ann'));
  await ann.fill('#text', 'hello bob');
  await ann.click('#send');
  await bob.waitForFunction(() => [...document.querySelectorAll('.msg .text')].some((e) => e.textContent === 'hello bob'));
  await ann.waitForFunction(() => document.querySelector('.msg .read')?.textContent.includes('bob'));

  await bob.fill('#text', 'hi ann');
  await bob.press('#text', 'Enter');
  await ann.waitForFunction(() => [...document.querySelectorAll('.msg .text')].some((e) => e.textContent === 'hi ann'));
  const seqs = await ann.$$eval('.msg', (els) => els.map((e) => Number(e.dataset.seq)));
  assert.deepEqual(seqs, [1, 2]);
  // ann has read up to seq 2: bob's page says so on bob's message only,
  // not on ann's own.
  await bob.waitForFunction(() => document.querySelectorAll('.msg .read')[1]?.textContent.includes('ann'));
  assert.equal(await bob.$$eval('.msg .read', (els) => els[0].textContent), '');
  if (shots) await ann.screenshot({ path: `${shots}/chat.png` });
  await bob.close();
  await ann.waitForFunction(() => !document.querySelector('#online').textContent.includes('bob'));
  await ann.close();
});

test('the client resumes with since and loses nothing while offline', async () => {
  const ann = await enter('ann2', 'chat:resume');
  const cat = await enter('cat', 'chat:resume');
  await cat.fill('#text', 'zero');
  await cat.click('#send');
  await ann.waitForFunction(() => document.querySelectorAll('.msg').length === 1);
  // Drop ann's socket; the client reconnects by itself and joins with since.
  await ann.evaluate(() => window.roomring.ws.close());
  for (const text of ['one', 'two', 'three']) {
    await cat.fill('#text', text);
    await cat.click('#send');
  }
  await ann.waitForSelector('#status.up');
  await ann.waitForFunction(() => document.querySelectorAll('.msg').length === 4);
  const texts = await ann.$$eval('.msg .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(texts, ['zero', 'one', 'two', 'three']);
  await ann.close();
  await cat.close();
});

test('a whole rolling update under an open chat shows no error and no gap', async () => {
  const ann = await enter('ann3', 'chat:rolling');
  const bob = await enter('bob3', 'chat:rolling');
  const post = async (path) => {
    const res = await fetch(`${base}${path}`, { method: 'POST' });
    assert.ok(res.ok, `${path}: ${res.status}`);
    return res.json();
  };
  let n = 0;
  const say = async (page) => {
    n += 1;
    await page.fill('#text', `m${n}`);
    await page.click('#send');
  };
  for (const old of ['node-1', 'node-2', 'node-3']) {
    await say(ann);
    await post('/api/cluster/nodes');
    await say(bob);
    await post(`/api/cluster/nodes/${old}/drain`);
    await say(ann);
    await say(bob);
  }
  await ann.waitForFunction((count) => document.querySelectorAll('.msg').length === count, n);
  await bob.waitForFunction((count) => document.querySelectorAll('.msg').length === count, n);
  for (const page of [ann, bob]) {
    const seqs = await page.$$eval('.msg', (els) => els.map((e) => Number(e.dataset.seq)));
    assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(await page.textContent('#error'), '');
    assert.equal(await page.textContent('#status'), 'online');
  }
  // Drains finish on their own (the API answers 202 at once).
  let ids = [];
  for (let i = 0; i < 100; i += 1) {
    const cluster = await fetch(`${base}/api/cluster`).then((r) => r.json());
    ids = cluster.nodes.map((x) => x.id).sort();
    if (ids.join() === 'node-4,node-5,node-6') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(ids, ['node-4', 'node-5', 'node-6']);
  await ann.close();
  await bob.close();
});

test('the page has the cluster view with the ring', async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/cluster.html`);
  await page.waitForFunction(() => document.querySelectorAll('#nodes tr').length === 3);
  const states = await page.$$eval('#nodes tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent));
  assert.deepEqual(states, ['active', 'active', 'active']);
  assert.ok((await page.$$('#ring path')).length > 3, 'the ring is drawn');
  if (shots) await page.screenshot({ path: `${shots}/cluster.png` });
  await page.close();
});

test('the chat page loads older messages as the reader scrolls up', async () => {
  const room = 'chat:scrollback';
  for (let i = 1; i <= 600; i++) {
    const res = await fetch(`${base}/api/rooms/${room}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ from: 'bot', body: { text: `line ${i}` } }),
    });
    assert.equal(res.status, 200);
  }
  const page = await enter('reader', room);
  await page.waitForFunction(() => document.querySelectorAll('.msg').length > 0);
  const shown = () => page.$$eval('.msg', (els) => els.map((e) => Number(e.dataset.seq)));
  const first = (await shown()).length;
  for (let round = 0; round < 40 && (await shown()).length < first + 500; round++) {
    const before = (await shown()).length;
    await page.evaluate(() => { document.querySelector('#messages').scrollTop = 0; });
    await page.waitForFunction((n) => document.querySelectorAll('.msg').length > n, before, { timeout: 5000 });
  }
  const seqs = await shown();
  assert.ok(seqs.length >= first + 500, `scrolled back ${seqs.length - first} messages`);
  // In order, none twice, none missing.
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs[0] + i));
  assert.equal(seqs.at(-1), 600);
  if (shots) await page.screenshot({ path: `${shots}/chat-scrollback.png` });
  await page.close();
});

test('the first screen remembers the name and rooms, and asks for a token only when the server wants one', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#intro').textContent.includes('roomring'));
  assert.equal(await page.isVisible('#token'), false, 'dev runs without tokens');
  await page.fill('#user', 'dora');
  await page.fill('#room', 'chat:remembered');
  await page.click('#enter');
  await page.waitForSelector('#status.up');
  await page.goto(base);
  assert.equal(await page.inputValue('#user'), 'dora');
  assert.equal(await page.inputValue('#room'), 'chat:remembered');
  if (shots) await page.screenshot({ path: `${shots}/chat-first-screen.png` });
  await context.close();
});
