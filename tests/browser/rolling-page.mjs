// Two chat pages stay open on a deployed cluster while every process of it
// is replaced, one after another; afterwards both pages must show every
// message once, in gap-free seq order, no error, and be online.
// scripts/compose-rolling runs it against compose.yaml behind HAProxy.
//
//   BASE=http://127.0.0.1:8080 TOKENS=ann-jwt,bob-jwt \
//   ROLL="scripts/compose-rolling roll" SERVICES=node1,gateway1 \
//   [SCREENSHOTS=dir] node tests/browser/rolling-page.mjs
//
// While each replacement runs, the pages keep sending, one message every
// 300 ms in turn; the client queues a send while it reconnects and resends
// it by id.
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';
import { talkThrough, caughtUp, assertWhole } from './dev.mjs';

const { BASE, TOKENS, ROLL, SERVICES, SCREENSHOTS } = process.env;
if (!BASE || !TOKENS || !ROLL || !SERVICES) {
  console.error('set BASE, TOKENS, ROLL and SERVICES');
  process.exit(64);
}
const room = `chat:rolling-${Date.now().toString(36)}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function enter(token) {
  const page = await browser.newPage();
  await page.goto(BASE);
  await page.fill('#token', token);
  await page.fill('#room', room);
  await page.click('#enter');
  await page.waitForSelector('#status.up', { timeout: 15000 });
  // Every change of the connection's state, with its time.
  await page.evaluate(() => {
    window.statusLog = [];
    window.roomring.on('status', (s) => window.statusLog.push([Date.now(), s.connected, s.code]));
  });
  return page;
}

const pages = [];
for (const token of TOKENS.split(',')) pages.push(await enter(token));

let n = 0;
const sent = [];
async function say() {
  n += 1;
  const page = pages[n % pages.length];
  const text = `m${n}`;
  sent.push(text);
  await page.fill('#text', text);
  await page.click('#send');
}

function roll(service) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn('sh', ['-c', `${ROLL} ${service}`], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) => (code === 0 ? resolve({ started, ms: Date.now() - started }) : reject(new Error(`${service}: replacing it exited ${code}`))));
  });
}

const rolls = []; // [service, when its replacement began]
for (const service of SERVICES.split(',')) {
  const { started, ms } = await talkThrough(say, () => roll(service));
  rolls.push([service, started]);
  console.log(`replaced ${service} in ${ms} ms, ${n} messages sent so far`);
}

for (const page of pages) {
  await caughtUp(page, n);
}
for (const [i, page] of pages.entries()) {
  await assertWhole(page, n, sent);
  const log = await page.evaluate(() => window.statusLog);
  // Times offline: from a socket's loss (not each failed attempt after it)
  // to the next open one.
  const spells = [];
  let since = null;
  let codes = [];
  for (const [at, up, code] of log) {
    if (!up) {
      if (since === null) since = at;
      codes.push(code);
    } else if (since !== null) {
      const during = rolls.filter(([, began]) => began <= since).pop()?.[0];
      spells.push(`${at - since} ms during ${during} (closes ${codes.join(' ')})`);
      since = null;
      codes = [];
    }
  }
  console.log(`page ${i + 1}: ${n} messages, seqs 1..${n}, no error, online; offline: ${spells.join(', ') || 'never'}`);
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/rolling-page-${i + 1}.png` });
}
await browser.close();
