// The browser client's reconnect rule (static/roomring.js): full jitter over
// a capped exponential ceiling, and at least a refusal's Retry-After.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  reconnectDelay, BACKOFF_BASE, BACKOFF_CAP,
} from '../../static/roomring.js';

test('the ceiling doubles from the base up to the cap', () => {
  const ceilings = [0, 1, 2, 3, 5, 6, 7, 40].map((n) => reconnectDelay(n, 0, 1));
  assert.deepEqual(ceilings, [500, 1000, 2000, 4000, 16000, 30000, 30000, 30000]);
  assert.equal(BACKOFF_BASE, 500);
  assert.equal(BACKOFF_CAP, 30000);
});

test('the wait is spread over the whole range below the ceiling', () => {
  assert.equal(reconnectDelay(3, 0, 0), 0);
  assert.equal(reconnectDelay(3, 0, 0.25), 1000);
  // A thousand clients closed at once come back spread, not together.
  const waits = Array.from({ length: 1000 }, () => reconnectDelay(4, 0));
  const early = waits.filter((w) => w < 4000).length;
  assert.ok(early > 350 && early < 650, `${early} of 1000 in the first half`);
  assert.ok(waits.every((w) => w >= 0 && w < 8000));
});

test('a Retry-After is waited out, with jitter on top', () => {
  assert.equal(reconnectDelay(0, 5, 0), 5000);
  assert.equal(reconnectDelay(0, 5, 0.5), 5250);
  assert.ok(reconnectDelay(9, 1, 0.99) > 1000);
});
