// roomring browser client: one WebSocket, automatic reconnect, resume with
// `since`, and `send` retried by id until acked (the server dedupes by id).

export class RoomringClient {
  constructor(url) {
    this.url = url;
    this.rooms = new Map();      // room -> last seq seen
    this.pending = new Map();    // send id -> {room, body, resolve, reject}
    this.handlers = new Map();   // frame type -> [fn]
    this.ws = null;
    this.backoff = 250;
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
    ws.onopen = () => {
      this.backoff = 250;
      this.emit('status', { connected: true });
      for (const [room, seq] of this.rooms) this.raw({ t: 'join', room, since: seq });
      for (const [id, p] of this.pending) this.raw({ t: 'send', room: p.room, id, body: p.body });
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      this.emit('status', { connected: false, code: ev.code });
      if (this.closed) return;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }

  receive(f) {
    if (f.t === 'joined') {
      for (const m of f.history) this.track(m);
      this.rooms.set(f.room, Math.max(this.rooms.get(f.room) ?? 0, f.seq));
    } else if (f.t === 'msg' || f.t === 'board.changed') {
      const last = this.rooms.get(f.room) ?? 0;
      if (f.seq <= last) return; // already seen (replayed after a reconnect)
      this.rooms.set(f.room, f.seq);
    } else if (f.t === 'ack' && this.pending.has(f.id)) {
      this.pending.get(f.id).resolve(f);
      this.pending.delete(f.id);
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

  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, 0);
    const since = this.rooms.get(room);
    this.raw(since > 0 ? { t: 'join', room, since } : { t: 'join', room });
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
