// The chat page through HAProxy while each gateway behind it is restarted
// (SIGTERM, then started again on its port): the pages come back by
// themselves and show every message once, in gap-free seq order, online and
// with no error. Real processes: a redis-server, a node, two gateways and
// HAProxy on free loopback ports.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, enterChat, talkThrough, caughtUp, assertWhole } from './dev.mjs';

const binary = process.env.ROOMRING_BIN || new URL('../../target/debug/roomring', import.meta.url).pathname;
const shots = process.env.SCREENSHOTS;
const secret = '--cluster-secret=browser-restart-secret-of-32-bytes-at-least';
const procs = [];
let browser;
let base;
let redisUrl;
const gateways = {}; // id -> { port, proc }

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

// Starts `roomring ROLE` and waits for its ready line.
async function member(role, id, port) {
  const proc = spawn(binary, [role, '--id', id, '--listen', `127.0.0.1:${port}`, '--coordinator', redisUrl, secret, '--auth', 'none'], { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(proc);
  const [line] = await once(createInterface({ input: proc.stdout }), 'line');
  if (!line.startsWith(`ready ${role} ${id}`)) throw new Error(`unexpected ready line: ${line}`);
  return proc;
}

async function waitFor(check, what, ms = 15000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${what} within ${ms} ms`);
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'roomring-restart-'));
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  procs.push(redis);
  redisUrl = `redis://127.0.0.1:${redisPort}`;
  await new Promise((r) => setTimeout(r, 300));
  await member('node', 'n1', await freePort());
  for (const id of ['g1', 'g2']) {
    const port = await freePort();
    gateways[id] = { port, proc: await member('gateway', id, port) };
  }
  const front = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, `
defaults
    mode http
    timeout connect 250ms
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    option http-server-close
    option redispatch 1
    retries 2
    retry-on conn-failure empty-response 503
frontend clients
    bind 127.0.0.1:${front}
    default_backend gateways
backend gateways
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fall 1 rise 2
    server g1 127.0.0.1:${gateways.g1.port} check
    server g2 127.0.0.1:${gateways.g2.port} check
`);
  procs.push(spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' }));
  base = `http://127.0.0.1:${front}`;
  await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 'ready cluster through HAProxy');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const p of procs.reverse()) p.kill('SIGKILL');
});

async function restart(id) {
  const gw = gateways[id];
  gw.proc.kill('SIGTERM');
  await once(gw.proc, 'exit');
  gw.proc = await member('gateway', id, gw.port);
}

test('the chat page comes back by itself, with no gap, when each gateway restarts', async () => {
  const room = `chat:restart-${Date.now().toString(36)}`;
  const pages = [await enterChat(browser, base, 'ann', room), await enterChat(browser, base, 'bob', room)];
  let n = 0;
  const sent = [];
  const say = async () => {
    n += 1;
    const page = pages[n % 2];
    sent.push(`m${n}`);
    await page.fill('#text', `m${n}`);
    await page.click('#send');
  };
  for (const id of ['g1', 'g2']) {
    await talkThrough(say, () => restart(id));
  }
  for (const [i, page] of pages.entries()) {
    await caughtUp(page, n);
    await assertWhole(page, n, sent);
    if (shots) await page.screenshot({ path: `${shots}/gateway-restart-${i + 1}.png` });
  }
});
