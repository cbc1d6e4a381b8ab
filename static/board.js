// The board page: sticky notes on a shared board, on the same client module
// as chat. A drag moves the selection locally and sends one relative
// `board.move` on drop; cursors are throttled to 20 frames/s.
import { RoomringClient, identify } from '/roomring.js';

const $ = (id) => document.getElementById(id);
const CURSOR_EVERY_MS = 50;
let client = null;
let room = null;
let me = null;
const widgets = new Map();   // id -> widget with v
let roles = {};              // user -> role, '*' -> default
const online = new Set();
const cursors = new Map();   // user -> element
const selection = new Set();

const roleOf = (user) => roles[user] || roles['*'] || 'editor';
const canEdit = () => roleOf(me) !== 'viewer';

function showError(e) {
  $('error').textContent = e ? `${e.code}: ${e.message}` : '';
}

function noteElement(id) {
  let el = document.querySelector(`.note[data-id="${CSS.escape(id)}"]`);
  if (!el) {
    el = document.createElement('div');
    el.className = 'note';
    el.dataset.id = id;
    el.innerHTML = '<div class="text"></div><div class="meta"></div>';
    el.addEventListener('dblclick', () => edit(id));
    $('board').append(el);
  }
  return el;
}

function drawNote(w) {
  const el = noteElement(w.id);
  el.style.left = `${w.x}px`;
  el.style.top = `${w.y}px`;
  el.style.background = w.color || '#fff59d';
  el.style.transform = '';
  el.querySelector('.text').textContent = w.text || '';
  el.querySelector('.meta').textContent = `v${w.v}`;
  el.classList.toggle('selected', selection.has(w.id));
}

function drawAll() {
  for (const el of document.querySelectorAll('.note')) {
    if (!widgets.has(el.dataset.id)) el.remove();
  }
  for (const w of widgets.values()) drawNote(w);
  drawPeople();
  drawSelection();
}

function drawPeople() {
  const users = new Set([...online, ...Object.keys(roles).filter((u) => u !== '*')]);
  $('people').replaceChildren(...[...users].sort().map((u) => {
    const li = document.createElement('li');
    li.dataset.user = u;
    li.textContent = `${u}${u === me ? ' (you)' : ''} · ${roleOf(u)}${online.has(u) ? '' : ' · away'}`;
    return li;
  }));
  $('myrole').textContent = me ? roleOf(me) : '';
  $('grant').hidden = roleOf(me) !== 'owner';
  for (const id of ['add', 'paint', 'delete']) $(id).disabled = !canEdit();
  $('board').classList.toggle('readonly', !canEdit());
}

function drawSelection() {
  for (const el of document.querySelectorAll('.note')) el.classList.toggle('selected', selection.has(el.dataset.id));
  $('selected').textContent = selection.size ? `${selection.size} selected` : '';
}

// One change redraws only what it touched, so that a board of thousands of
// notes stays smooth.
function apply(change) {
  for (const w of change.widgets || []) {
    const had = widgets.get(w.id);
    if (had && had.v >= w.v) continue; // replayed or older
    const now = 'kind' in w ? w : { ...had, x: w.x, y: w.y, v: w.v };
    widgets.set(w.id, now);
    drawNote(now);
  }
  for (const id of change.deleted || []) {
    widgets.delete(id);
    selection.delete(id);
    document.querySelector(`.note[data-id="${CSS.escape(id)}"]`)?.remove();
  }
  if (change.roles) {
    roles = { ...roles, ...change.roles };
    drawPeople();
  }
  if (change.deleted?.length) drawSelection();
}

async function edit(id) {
  if (!canEdit()) return;
  const w = widgets.get(id);
  const text = prompt('note text', w.text || '');
  if (text === null) return;
  try {
    await client.put(room, { ...strip(w), text }, w.v);
    showError(null);
  } catch (e) {
    // A conflict: someone changed the note first. Show theirs.
    showError(e.code === 'conflict' ? { code: 'conflict', message: `someone changed this note first; it now reads "${widgets.get(id)?.text ?? ''}"` } : e);
  }
}

function strip(w) {
  const { v, ...widget } = w;
  return widget;
}

// Dragging the selection (or one note), and the rubber band on empty space.
let drag = null;
function boardPoint(ev) {
  const r = $('board').getBoundingClientRect();
  return { x: ev.clientX - r.left + $('board').scrollLeft, y: ev.clientY - r.top + $('board').scrollTop };
}

function onDown(ev) {
  if (ev.button !== 0) return;
  const p = boardPoint(ev);
  const note = ev.target.closest('.note');
  if (note && canEdit()) {
    const id = note.dataset.id;
    if (!selection.has(id)) { selection.clear(); selection.add(id); drawSelection(); }
    drag = { kind: 'move', from: p, dx: 0, dy: 0 };
  } else if (!note) {
    selection.clear();
    drag = { kind: 'band', from: p };
    Object.assign($('band').style, { left: `${p.x}px`, top: `${p.y}px`, width: '0px', height: '0px' });
    $('band').hidden = false;
    drawSelection();
  }
}

function onMove(ev) {
  if (!drag) return;
  const p = boardPoint(ev);
  if (drag.kind === 'move') {
    drag.dx = p.x - drag.from.x;
    drag.dy = p.y - drag.from.y;
    // Local only until the drop: 1000 notes move with one frame on release.
    for (const id of selection) {
      const el = noteElement(id);
      el.style.transform = `translate(${drag.dx}px, ${drag.dy}px)`;
    }
  } else {
    const x = Math.min(p.x, drag.from.x), y = Math.min(p.y, drag.from.y);
    const w = Math.abs(p.x - drag.from.x), h = Math.abs(p.y - drag.from.y);
    Object.assign($('band').style, { left: `${x}px`, top: `${y}px`, width: `${w}px`, height: `${h}px` });
    drag.rect = { x, y, w, h };
  }
}

async function onUp() {
  const d = drag;
  drag = null;
  if (!d) return;
  if (d.kind === 'band') {
    $('band').hidden = true;
    if (d.rect) {
      for (const el of document.querySelectorAll('.note')) {
        const x = el.offsetLeft, y = el.offsetTop, w = el.offsetWidth, h = el.offsetHeight;
        const r = d.rect;
        if (x < r.x + r.w && x + w > r.x && y < r.y + r.h && y + h > r.y) selection.add(el.dataset.id);
      }
    }
    drawSelection();
    return;
  }
  if (d.dx === 0 && d.dy === 0) return;
  const ids = [...selection];
  try {
    await client.moveBy(room, ids, Math.round(d.dx), Math.round(d.dy));
    showError(null);
  } catch (e) {
    showError(e);
    drawAll(); // back to where the server has them
  }
}

let lastCursor = 0;
let cursorTimer = null;
function sendCursor(p) {
  const now = Date.now();
  const due = lastCursor + CURSOR_EVERY_MS - now;
  clearTimeout(cursorTimer);
  if (due <= 0) {
    lastCursor = now;
    client.cursor(room, Math.round(p.x), Math.round(p.y));
  } else {
    cursorTimer = setTimeout(() => sendCursor(p), due);
  }
}

function showCursor(c) {
  let el = cursors.get(c.user);
  if (!el) {
    el = document.createElement('div');
    el.className = 'cursor';
    el.dataset.user = c.user;
    el.textContent = c.user;
    $('board').append(el);
    cursors.set(c.user, el);
  }
  el.style.left = `${c.x}px`;
  el.style.top = `${c.y}px`;
}

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  room = $('room').value.trim();
  const who = identify($('token').value.trim(), $('user').value.trim());
  me = who.user;
  if (!me) { showError({ code: 'bad_request', message: 'a name or a token is needed' }); return; }
  if (!room.startsWith('board:')) { showError({ code: 'bad_request', message: 'a board room is board:NAME' }); return; }
  client = new RoomringClient(who.url);
  window.roomring = client; // for the console and the browser tests
  window.board = { widgets, selection, roles: () => roles };
  client
    .on('status', (s) => {
      $('status').textContent = s.connected ? 'online' : 'reconnecting…';
      $('status').className = 'status ' + (s.connected ? 'up' : 'down');
      if (s.connected) client.join(room);
    })
    .on('joined', (f) => {
      if (f.room !== room) return;
      widgets.clear();
      for (const w of f.widgets || []) widgets.set(w.id, w);
      roles = f.roles || {};
      online.clear();
      f.online.forEach((u) => online.add(u));
      for (const h of f.history) if (h.t === 'board.changed') apply(h);
      drawAll();
    })
    .on('board.changed', apply)
    .on('presence', (p) => { p.online ? online.add(p.user) : online.delete(p.user); if (!p.online) { cursors.get(p.user)?.remove(); cursors.delete(p.user); } drawPeople(); })
    .on('board.cursors', (b) => { for (const c of b.cursors) if (c.user !== me) showCursor(c); })
    .on('error', (e) => { if (!e.id) showError(e); });
  $('login').hidden = true;
  $('app').hidden = false;
});

// Moves and the drop are followed on the window, so that a drag that leaves
// the board still ends; clicks keep their targets (no pointer capture).
$('board').addEventListener('pointerdown', onDown);
$('board').addEventListener('pointermove', (ev) => sendCursor(boardPoint(ev)));
window.addEventListener('pointermove', onMove);
window.addEventListener('pointerup', onUp);

$('add').addEventListener('click', async () => {
  const id = `n-${me}-${Date.now().toString(36)}`;
  const n = widgets.size;
  const widget = { id, kind: 'sticky', x: 20 + (n % 8) * 130, y: 20 + Math.floor(n / 8) % 6 * 110, w: 120, h: 90, text: 'new note', color: $('color').value };
  try { await client.put(room, widget); showError(null); } catch (e) { showError(e); }
});

$('paint').addEventListener('click', async () => {
  for (const id of selection) {
    const w = widgets.get(id);
    if (!w) continue;
    try { await client.put(room, { ...strip(w), color: $('color').value }, w.v); } catch (e) { showError(e); }
  }
});

$('delete').addEventListener('click', async () => {
  if (!selection.size) return;
  try { await client.remove(room, [...selection]); selection.clear(); showError(null); } catch (e) { showError(e); }
});

$('grant').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await client.grant(room, $('grant-user').value.trim(), $('grant-role').value);
    showError(null);
  } catch (e) { showError(e); }
});
