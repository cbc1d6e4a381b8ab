// A real `roomring dev` and a headless Chromium for one test file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const binary = process.env.ROOMRING_BIN || new URL('../../target/debug/roomring', import.meta.url).pathname;

// Starts `roomring dev` with `args` and the browser; returns
// { base, browser, stop }.
export async function startDev(args = []) {
  const server = spawn(binary, ['dev', '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: server.stdout });
  const [line] = await once(lines, 'line');
  const [ready, role, , addr] = line.split(' ');
  if (`${ready} ${role}` !== 'ready dev') throw new Error(`unexpected ready line: ${line}`);
  const browser = await launchBrowser();
  return {
    base: `http://${addr}`,
    browser,
    async stop() {
      await browser.close();
      server.kill('SIGTERM');
    },
  };
}

// A headless Chromium (CHROMIUM names another binary).
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// A new chat page at `base` whose user `name` has entered `room` and is
// online.
export async function enterChat(browser, base, name, room) {
  const page = await browser.newPage();
  await page.goto(base);
  await page.fill('#user', name);
  await page.fill('#room', room);
  await page.click('#enter');
  await page.waitForSelector('#status.up', { timeout: 15000 });
  return page;
}

// Sends through `say` before `during()` (a restart, a roll) begins, every
// 300 ms while it runs, and once after it ends; what `during` returned.
export async function talkThrough(say, during) {
  await say();
  let done = false;
  const running = during().finally(() => { done = true; });
  while (!done) {
    await say();
    await new Promise((r) => setTimeout(r, 300));
  }
  const result = await running;
  await say();
  return result;
}

// Waits until a chat page is connected again and shows `count` messages.
export async function caughtUp(page, count) {
  await page.waitForSelector('#status.up', { timeout: 15000 });
  await page.waitForFunction((n) => document.querySelectorAll('.msg').length >= n, count, { timeout: 15000 });
}

// Asserts a chat page shows seqs 1..n gap-free, each message of `sent`
// once, no error, and that it is online.
export async function assertWhole(page, n, sent) {
  const seqs = await page.$$eval('.msg', (els) => els.map((e) => Number(e.dataset.seq)));
  const texts = await page.$$eval('.msg .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(seqs, Array.from({ length: n }, (_, k) => k + 1), 'gap-free seqs 1..n');
  assert.deepEqual([...texts].sort(), [...sent].sort(), 'every message once');
  assert.equal(await page.textContent('#error'), '');
  assert.equal(await page.textContent('#status'), 'online');
}
