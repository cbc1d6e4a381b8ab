import { RoomringClient, identify } from '/roomring.js';

const $ = (id) => document.getElementById(id);
let client = null;
let room = null;
let me = null;
const online = new Set();     // the names shown (at most 200 in a big room)
let onlineCount = 0;          // every online user
const reads = new Map();      // user -> seq
const typing = new Map();     // user -> timeout
let lastSeq = 0;

function render() {
  $('online').replaceChildren(...[...online].sort().map((u) => {
    const li = document.createElement('li');
    li.textContent = u === me ? `${u} (you)` : u;
    return li;
  }));
  $('online-count').textContent = `· ${onlineCount}`;
  const hidden = onlineCount - online.size;
  $('online-more').hidden = hidden <= 0;
  $('online-more').textContent = `and ${hidden} more`;
  $('typing').textContent = typing.size ? `${[...typing.keys()].join(', ')} typing…` : '';
  for (const el of $('messages').children) {
    const seq = Number(el.dataset.seq);
    // Who else has read it: neither this user nor the message's author.
    const readers = [...reads].filter(([u, s]) => u !== me && u !== el.dataset.from && s >= seq).map(([u]) => u);
    el.querySelector('.read').textContent = readers.length ? `read by ${readers.join(', ')}` : '';
  }
}

function messageElement(m) {
  const el = document.createElement('div');
  el.className = 'msg' + (m.from === me ? ' mine' : '');
  el.dataset.seq = m.seq;
  el.dataset.from = m.from;
  const text = typeof m.body === 'object' && m.body && 'text' in m.body ? m.body.text : JSON.stringify(m.body);
  el.innerHTML = '<span class="from"></span><span class="text"></span><span class="read"></span>';
  el.querySelector('.from').textContent = m.from;
  el.querySelector('.text').textContent = text;
  return el;
}

function addMessage(m) {
  if (document.querySelector(`[data-seq="${m.seq}"]`)) return;
  $('messages').append(messageElement(m));
  $('messages').scrollTop = $('messages').scrollHeight;
  lastSeq = Math.max(lastSeq, m.seq);
  if (m.from !== me && document.visibilityState === 'visible') client.read(room, m.seq);
}

// Older messages, a page at a time, as the reader scrolls to the top.
let paging = false;
let older = true;
async function loadOlder() {
  const box = $('messages');
  const first = box.firstElementChild;
  if (paging || !older || !client || !first) return;
  paging = true;
  try {
    const page = await client.history(room, Number(first.dataset.seq), 50);
    older = page.more;
    const height = box.scrollHeight;
    const fresh = page.messages.filter((m) => m.t === 'msg' && !document.querySelector(`[data-seq="${m.seq}"]`));
    box.prepend(...fresh.map(messageElement));
    box.scrollTop += box.scrollHeight - height; // the reader stays where they were
    render();
  } catch (e) {
    $('error').textContent = `${e.code}: ${e.message}`;
  } finally {
    paging = false;
  }
}
$('messages').addEventListener('scroll', () => { if ($('messages').scrollTop < 40) loadOlder(); });

// The first screen: the name and the rooms used last time, and the token
// field only when the server wants tokens.
const saved = (key, fallback) => { try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; } };
$('user').value = saved('roomring.name', '');
const recent = saved('roomring.rooms', []);
if (recent.length) $('room').value = recent[0];
$('recent-rooms').replaceChildren(...recent.map((r) => Object.assign(document.createElement('option'), { value: r })));
fetch('/api/config').then((r) => r.json()).then((config) => {
  const wantsToken = config.auth === 'jwt';
  $('token').hidden = !wantsToken;
  $('user').hidden = wantsToken;
}).catch(() => { $('token').hidden = false; });

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  room = $('room').value.trim();
  localStorage.setItem('roomring.rooms', JSON.stringify([room, ...recent.filter((r) => r !== room)].slice(0, 5)));
  const who = identify($('token').value.trim(), $('user').value.trim());
  me = who.user;
  if (!me) { $('error').textContent = 'a name or a token is needed'; return; }
  if (!$('token').value.trim()) localStorage.setItem('roomring.name', JSON.stringify(me));
  client = new RoomringClient(who.url);
  window.roomring = client; // for the console and the browser tests
  client
    .on('status', (s) => {
      $('status').textContent = s.connected ? 'online' : 'reconnecting…';
      $('status').className = 'status ' + (s.connected ? 'up' : 'down');
    })
    .on('joined', (f) => {
      online.clear();
      f.online.forEach((u) => online.add(u));
      onlineCount = f.online_count ?? online.size;
      for (const [u, s] of Object.entries(f.reads || {})) reads.set(u, s);
      f.history.forEach(addMessage);
      render();
      // Older ones come as the reader scrolls up; a first screen that does
      // not fill the box asks at once.
      older = f.history.length > 0 && f.history[0].seq > 1;
      if ($('messages').scrollHeight <= $('messages').clientHeight) loadOlder();
    })
    .on('msg', (m) => { typing.delete(m.from); addMessage(m); render(); })
    .on('presence', (p) => {
      if (p.online && !online.has(p.user)) { online.add(p.user); onlineCount++; }
      if (!p.online && online.delete(p.user)) onlineCount--;
      render();
    })
    .on('presence.count', (c) => { onlineCount = c.count; render(); })
    .on('typing', (t) => {
      clearTimeout(typing.get(t.user));
      typing.set(t.user, setTimeout(() => { typing.delete(t.user); render(); }, 3000));
      render();
    })
    .on('read', (r) => { reads.set(r.user, Math.max(reads.get(r.user) ?? 0, r.seq)); render(); })
    .on('error', (e) => { $('error').textContent = `${e.code}: ${e.message}`; });
  client.on('status', (s) => { if (s.connected && !client.joinedOnce) { client.joinedOnce = true; client.join(room); } });
  $('login').hidden = true;
  $('intro').hidden = true;
  $('chat').hidden = false;
  $('text').focus();
});

let lastTyping = 0;
$('text').addEventListener('input', () => {
  if (Date.now() - lastTyping > 1500) { client.typing(room); lastTyping = Date.now(); }
});

$('compose').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('text').value;
  if (!text) return;
  $('text').value = '';
  try {
    await client.send(room, { text });
    $('error').textContent = '';
  } catch (e) {
    $('error').textContent = `${e.code}: ${e.message}`;
  }
});

document.addEventListener('visibilitychange', () => {
  if (client && document.visibilityState === 'visible' && lastSeq) client.read(room, lastSeq);
});
