// roomring browser client: one WebSocket, automatic reconnect (full
// jitter, capped exponential backoff, `Retry-After` honoured), resume with
// `since` and `epoch`, `join` and `send` retried while the server says
// `unavailable` (a send by its id: the server dedupes by id), and board
// operations answered by their own `board.changed`.

// Reconnecting: the n-th try in a row waits a random time in
// [0, min(CAP, BASE * 2^n)) ms, and at least what a refusal's Retry-After
// says; the count of tries starts again only once a connection has lived
// LIVED ms, so that a server that accepts and drops at once is not hammered.
export const BACKOFF_BASE = 500;
export const BACKOFF_CAP = 30000;
export const BACKOFF_LIVED = 10000;

// How long to wait before try `attempt` (0 for the first after a close),
// given a `Retry-After` in seconds (or none) and a random number in [0, 1).
export function reconnectDelay(attempt, retryAfter, random = Math.random()) {
  const ceiling = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** Math.min(attempt, 16));
  const jittered = random * ceiling;
  if (retryAfter > 0) return retryAfter * 1000 + jittered;
  return jittered;
}

export class RoomringClient {
  constructor(url) {
    this.url = url;
    this.rooms = new Map();      // room -> last seq seen
    this.epochs = new Map();     // room -> history epoch, when the server names one
    this.pending = new Map();    // send id -> {room, body, resolve, reject}
    this.requests = new Map();   // board op id -> {resolve, reject}
    this.handlers = new Map();   // frame type -> [fn]
    this.joinTries = new Map();  // room -> joins refused in a row
    this.ws = null;
    this.attempt = 0;            // reconnect tries in a row
    this.openedAt = 0;
    this.closed = false;
    this.counter = 0;
    this.connect();
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  emit(type, frame) {
    for (const fn of this.handlers.get(type) || []) fn(frame);
  }

  nextId(prefix) {
    this.counter += 1;
    return `${prefix}-${Date.now().toString(36)}-${this.counter}`;
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.openedAt = Date.now();
      this.emit('status', { connected: true });
      for (const room of this.rooms.keys()) this.raw(this.joinFrame(room));
      for (const [id, p] of this.pending) this.raw({ t: 'send', room: p.room, id, body: p.body });
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      // A board operation in flight may or may not have been applied: it is
      // not sent again (a move would apply twice); its caller hears of it.
      for (const [, r] of this.requests) r.reject({ code: 'unavailable', message: 'the connection dropped; check the board and try again' });
      this.requests.clear();
      this.emit('status', { connected: false, code: ev.code });
      if (this.closed) return;
      if (opened && Date.now() - this.openedAt >= BACKOFF_LIVED) this.attempt = 0;
      const attempt = this.attempt;
      this.attempt += 1;
      // Refused before it opened: the server may say when to come back.
      const retryAfter = opened ? Promise.resolve(0) : this.retryAfter();
      retryAfter.then((secs) => {
        if (!this.closed) setTimeout(() => this.connect(), reconnectDelay(attempt, secs));
      });
    };
  }

  // Asks the gateway (a plain GET of /ws) whether it refuses connections and
  // for how long: its `Retry-After` in seconds, or 0.
  async retryAfter() {
    try {
      const url = this.url.replace(/^ws/, 'http');
      const res = await fetch(url, { cache: 'no-store' });
      if (res.status !== 503) return 0;
      return Number(res.headers.get('retry-after')) || 0;
    } catch {
      return 0;
    }
  }

  receive(f) {
    if (f.t === 'joined') {
      this.joinTries.delete(f.room);
      if (f.truncated || (f.epoch && this.epochs.has(f.room) && this.epochs.get(f.room) !== f.epoch)) {
        this.rooms.set(f.room, 0); // another history: start over from what joined holds
      }
      if (f.epoch) this.epochs.set(f.room, f.epoch);
      for (const m of f.history) this.track(m);
      this.rooms.set(f.room, Math.max(this.rooms.get(f.room) ?? 0, f.seq));
    } else if (f.t === 'msg' || f.t === 'board.changed') {
      const last = this.rooms.get(f.room) ?? 0;
      if (f.t === 'board.changed' && f.id && this.requests.has(f.id)) {
        this.requests.get(f.id).resolve(f);
        this.requests.delete(f.id);
      }
      if (f.seq <= last) return; // already seen (replayed after a reconnect)
      this.rooms.set(f.room, f.seq);
    } else if ((f.t === 'presence.page' || f.t === 'history') && f.id && this.requests.has(f.id)) {
      this.requests.get(f.id).resolve(f);
      this.requests.delete(f.id);
    } else if (f.t === 'error' && f.id && this.requests.has(f.id)) {
      this.requests.get(f.id).reject(f);
      this.requests.delete(f.id);
    } else if (f.t === 'ack' && this.pending.has(f.id)) {
      this.pending.get(f.id).resolve(f);
      this.pending.delete(f.id);
    } else if (f.t === 'error' && f.id && f.id.startsWith('join:') && this.rooms.has(f.room)) {
      // A join the room's node could not take right now: again, later.
      if (f.code === 'unavailable' || f.code === 'rate_limited') {
        const attempt = this.joinTries.get(f.room) ?? 0;
        this.joinTries.set(f.room, attempt + 1);
        setTimeout(() => {
          if (this.rooms.has(f.room)) this.raw(this.joinFrame(f.room));
        }, reconnectDelay(attempt, 0));
      }
    } else if (f.t === 'error' && f.id && this.pending.has(f.id)) {
      if (f.code !== 'unavailable' && f.code !== 'rate_limited') {
        this.pending.get(f.id).reject(f);
        this.pending.delete(f.id);
      } else {
        const p = this.pending.get(f.id);
        setTimeout(() => this.raw({ t: 'send', room: p.room, id: f.id, body: p.body }), 500);
      }
    }
    this.emit(f.t, f);
  }

  track(m) {
    const last = this.rooms.get(m.room) ?? 0;
    if (m.seq > last) this.rooms.set(m.room, m.seq);
  }

  raw(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  joinFrame(room) {
    const since = this.rooms.get(room) ?? 0;
    const frame = { t: 'join', room, id: `join:${room}` };
    if (since > 0) frame.since = since;
    if (since > 0 && this.epochs.has(room)) frame.epoch = this.epochs.get(room);
    return frame;
  }

  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, 0);
    this.raw(this.joinFrame(room));
  }

  // A board operation; resolves with its `board.changed`, rejects with its
  // `error` (conflict, forbidden, ...).
  request(frame) {
    const id = this.nextId('b');
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject({ code: 'unavailable', message: 'not connected' });
        return;
      }
      this.requests.set(id, { resolve, reject });
      this.raw({ ...frame, id });
    });
  }

  put(room, widget, base) {
    const frame = { t: 'board.put', room, widget };
    if (base !== undefined) frame.base = base;
    return this.request(frame);
  }

  moveTo(room, moves) { return this.request({ t: 'board.move', room, moves }); }
  moveBy(room, ids, dx, dy) { return this.request({ t: 'board.move', room, ids, dx, dy }); }
  remove(room, ids) { return this.request({ t: 'board.delete', room, ids }); }
  grant(room, user, role) { return this.request({ t: 'board.role', room, user, role }); }
  cursor(room, x, y) { this.raw({ t: 'board.cursor', room, x, y }); }

  // One page of a room's online users, in ascending order; pass the page's
  // `next` as `after` for the following one.
  presenceList(room, after, limit) {
    const frame = { t: 'presence.list', room };
    if (after !== undefined) frame.after = after;
    if (limit !== undefined) frame.limit = limit;
    return this.request(frame);
  }

  // A page of a room's stored events just below seq `before` (default: the
  // latest), ascending; `more` says whether older ones exist. Pass the
  // page's first seq as `before` for the one above it.
  history(room, before, limit) {
    const frame = { t: 'history', room };
    if (before !== undefined) frame.before = before;
    if (limit !== undefined) frame.limit = limit;
    return this.request(frame);
  }

  leave(room) {
    this.rooms.delete(room);
    this.raw({ t: 'leave', room });
  }

  send(room, body) {
    const id = this.nextId('m');
    return new Promise((resolve, reject) => {
      this.pending.set(id, { room, body, resolve, reject });
      this.raw({ t: 'send', room, id, body });
    });
  }

  typing(room) { this.raw({ t: 'typing', room }); }
  read(room, seq) { this.raw({ t: 'read', room, seq }); }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

// Who a page's user is and the WebSocket URL for them: a JWT (its `sub`
// names the user) or, under `--auth none`, a plain name.
export function identify(token, name) {
  let user;
  let query;
  if (token) {
    const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    user = claims.sub;
    query = `token=${encodeURIComponent(token)}`;
  } else {
    user = name;
    query = `user=${encodeURIComponent(name)}`;
  }
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  return { user, url: `${proto}://${location.host}/ws?${query}` };
}
