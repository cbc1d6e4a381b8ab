// Cluster view: polls /api/cluster, draws the ring's arcs per node, and (in
// dev) adds and drains nodes.
const $ = (id) => document.getElementById(id);
const colors = ['#3367d6', '#2e8b57', '#d2691e', '#8a2be2', '#c71585', '#008b8b', '#b8860b', '#556b2f'];
const colorOf = new Map();
const color = (id) => {
  if (!colorOf.has(id)) colorOf.set(id, colors[colorOf.size % colors.length]);
  return colorOf.get(id);
};

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

async function api(method, path) {
  const res = await fetch(path, { method });
  const body = await res.json();
  if (!res.ok) throw new Error(`${body.error.code}: ${body.error.message}`);
  return body;
}

function drawRing(arcs) {
  const svg = $('ring');
  const ns = 'http://www.w3.org/2000/svg';
  svg.replaceChildren();
  const r = 130;
  for (const a of arcs) {
    const t0 = a.start * 2 * Math.PI - Math.PI / 2;
    const t1 = a.end * 2 * Math.PI - Math.PI / 2;
    const path = document.createElementNS(ns, 'path');
    const large = a.end - a.start > 0.5 ? 1 : 0;
    path.setAttribute('d', `M ${r * Math.cos(t0)} ${r * Math.sin(t0)} A ${r} ${r} 0 ${large} 1 ${r * Math.cos(t1)} ${r * Math.sin(t1)}`);
    path.setAttribute('stroke', color(a.node));
    path.setAttribute('stroke-width', '22');
    path.setAttribute('fill', 'none');
    path.dataset.node = a.node;
    svg.append(path);
  }
}

async function refresh() {
  try {
    const c = await api('GET', '/api/cluster');
    $('epoch').textContent = `epoch ${c.epoch}`;
    $('nodes').replaceChildren(...c.nodes.map((n) => {
      const tr = document.createElement('tr');
      const name = cell(n.id);
      name.style.color = color(n.id);
      const btn = document.createElement('button');
      btn.textContent = 'Drain';
      btn.disabled = n.state !== 'active';
      btn.onclick = () => api('POST', `/api/cluster/nodes/${n.id}/drain`).catch(show);
      const action = document.createElement('td');
      action.append(btn);
      tr.append(name, cell(n.addr), cell(n.state), cell(n.rooms), action);
      return tr;
    }));
    $('gateways').replaceChildren(...c.gateways.map((g) => {
      const tr = document.createElement('tr');
      tr.append(cell(g.id), cell(g.addr), cell(g.connections));
      return tr;
    }));
    drawRing(c.arcs || []);
    $('error').textContent = '';
  } catch (e) {
    show(e);
  }
}

function show(e) { $('error').textContent = String(e.message || e); }

$('add').onclick = () => api('POST', '/api/cluster/nodes').then(refresh).catch(show);
refresh();
setInterval(refresh, 1000);
