// The live view page. Everything a session wrote (hosts, paths, reasons) is untrusted: it reaches
// the DOM only through textContent, with control and bidi characters shown as visible escapes.
// The DOM keeps at most MAX_ROWS timeline rows, whatever arrives.
// One file past 500 lines on purpose: it is served as it stands (script-src 'self', no bundler,
// no build step), and its parts (timeline, sessions and rules, inbox) share one state.
'use strict';

const MAX_ROWS = 500;
const FLUSH_MS = 50;

const $ = (id) => document.getElementById(id);

/** Control, zero-width and bidi-override characters: shown as ⟨U+XXXX⟩, never obeyed. */
const HIDDEN_CHARS = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;

function escapeHidden(ch) {
  return `⟨U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`;
}

/**
 * Fills `el` with `text`, hidden characters as marked escapes (line ends and tabs kept where `multiline`:
 * the JSON and diff blocks). Text nodes only.
 */
function setText(el, text, multiline = false) {
  const s = String(text ?? '');
  el.textContent = '';
  let last = 0;
  for (const m of s.matchAll(HIDDEN_CHARS)) {
    if (multiline && (m[0] === '\n' || m[0] === '\t')) continue;
    if (m.index > last) el.append(document.createTextNode(s.slice(last, m.index)));
    const mark = document.createElement('span');
    mark.className = 'ctl';
    mark.textContent = escapeHidden(m[0]);
    el.append(mark);
    last = m.index + m[0].length;
  }
  if (last < s.length) el.append(document.createTextNode(s.slice(last)));
  return el;
}

function cell(text, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  return setText(td, text);
}

const state = {
  sessions: [],
  selected: null,
  source: null,
  lastId: null,
  /** Rendered rows, oldest first: { ev, tr }. */
  rows: [],
  /** Received, not yet rendered (paused, or waiting for the next flush). */
  pending: [],
  dropped: 0,
  /** The server skipped lines on a resume (the page was away too long). */
  gap: false,
  paused: false,
  flushTimer: null,
  tab: sessionStorage.getItem('airlock-view:tab') || 'timeline',
  approving: null,
};

// ---------------------------------------------------------------- timeline

/** scheme://host[:port], the port left out when it is the scheme's default. */
function originOf(scheme, host, port) {
  const p = (scheme === 'https' && port === 443) || (scheme === 'http' && port === 80) ? '' : `:${port}`;
  return `${scheme}://${String(host ?? '').includes(':') ? `[${host}]` : host}${p}`;
}

function targetOf(ev) {
  return `${originOf(ev.scheme, ev.host, ev.port)}${ev.kind === 'tunnel' ? '' : ev.path ?? ''}`;
}

function matches(ev) {
  const action = $('f-action').value;
  if (action && ev.action !== action) return false;
  const text = $('f-text').value.trim().toLowerCase();
  if (!text) return true;
  return [targetOf(ev), ev.method, ev.rule, ev.reason, String(ev.status), (ev.credentials || []).join(' '), ev.detail]
    .some((v) => v && String(v).toLowerCase().includes(text));
}

function rowFor(ev) {
  const tr = document.createElement('tr');
  tr.className = ev.action;
  const time = typeof ev.time === 'string' ? ev.time.slice(11, 23) : '';
  tr.append(
    cell(time, 'mono'),
    cell(ev.action === 'would_deny' ? 'would deny' : ev.action, `action ${ev.action}`),
    cell(ev.status, 'mono'),
    cell(ev.kind === 'tunnel' ? 'CONNECT' : ev.method, 'mono'),
    cell(targetOf(ev), 'target'),
    cell(ev.rule ?? '—'),
    cell(ev.reason + (ev.detail ? ` [${ev.detail}]` : ''), 'reason'),
    cell(`${ev.bytes_up ?? 0} / ${ev.bytes_down ?? 0}`, 'mono'),
    cell(ev.duration_ms, 'mono'),
    cell((ev.credentials || []).join(', ')),
    cell(ev.policy_version ?? '', 'mono'),
  );
  tr.hidden = !matches(ev);
  tr.addEventListener('click', () => showDetail(ev));
  return tr;
}

function receive(ev) {
  state.pending.push(ev);
  if (state.pending.length > MAX_ROWS) {
    state.dropped += state.pending.length - MAX_ROWS;
    state.pending.splice(0, state.pending.length - MAX_ROWS);
  }
  // One timer per batch: while paused it only updates the counts.
  if (state.flushTimer === null) state.flushTimer = setTimeout(flush, FLUSH_MS);
}

function flush() {
  state.flushTimer = null;
  if (state.paused || state.pending.length === 0) return updateCounts();
  const batch = state.pending.splice(0);
  const body = $('rows');
  const fragment = document.createDocumentFragment();
  // Newest on top: the batch goes in reversed, before the current first row.
  for (let i = batch.length - 1; i >= 0; i--) {
    const tr = rowFor(batch[i]);
    fragment.append(tr);
    state.rows.push({ ev: batch[i], tr });
  }
  body.prepend(fragment);
  const excess = state.rows.length - MAX_ROWS;
  if (excess > 0) for (const old of state.rows.splice(0, excess)) old.tr.remove();
  updateCounts();
}

function applyFilters() {
  for (const r of state.rows) r.tr.hidden = !matches(r.ev);
  updateCounts();
}

function updateCounts() {
  const shown = state.rows.reduce((n, r) => n + (r.tr.hidden ? 0 : 1), 0);
  const waiting = state.paused && state.pending.length ? `; paused: ${state.pending.length} new` : '';
  const dropped = state.dropped || state.gap ? `; ${state.dropped ? `${state.dropped} ` : ''}older lines not shown (the export has all)` : '';
  $('shown').textContent = `${shown} of the last ${state.rows.length} shown${waiting}${dropped}`;
  $('pause').textContent = state.paused ? `Resume${state.pending.length ? ` (${state.pending.length} new)` : ''}` : 'Pause';
}

function togglePause() {
  state.paused = !state.paused;
  $('pause').classList.toggle('paused', state.paused);
  if (!state.paused) flush();
  updateCounts();
}

/**
 * Quotes for POSIX shells. Hidden characters are percent-encoded: they cannot be in a URL, and a
 * bidi override pasted into a terminal would show the command other than it runs.
 */
function shellQuote(s) {
  return `'${String(s).replace(HIDDEN_CHARS, (c) => encodeURIComponent(c)).replace(/'/g, `'\\''`)}'`;
}

/** The request as a curl command. Audit lines carry no header values, so no secret is in it. */
function curlFor(ev) {
  const lines = [];
  if (ev.credentials && ev.credentials.length) {
    lines.push(`# credentials left out (Airlock swaps them in inside the session): ${ev.credentials.join(', ')}`);
  }
  if (String(ev.path ?? '').includes('=redacted')) lines.push('# query values were redacted in the audit log');
  const method = ev.kind === 'tunnel' ? null : ev.method;
  const parts = ['curl'];
  if (method && method !== 'GET') parts.push('-X', shellQuote(method));
  parts.push(shellQuote(targetOf(ev)));
  lines.push(parts.join(' '));
  return lines.join('\n');
}

function showDetail(ev) {
  setText($('curl'), curlFor(ev), true);
  setText($('detail-json'), JSON.stringify(ev, null, 2), true);
  $('copied').textContent = '';
  $('detail').hidden = false;
  $('detail').dataset.curl = curlFor(ev);
}

async function copyCurl() {
  try {
    await navigator.clipboard.writeText($('detail').dataset.curl || '');
    $('copied').textContent = 'copied';
  } catch {
    $('copied').textContent = 'select the command above and copy it';
  }
}

// ---------------------------------------------------------------- streams and reloads

function storageKey(id) {
  return `airlock-view:events:${id}`;
}

/** Before the page goes (reload, navigation), keep the rows and the last event id. */
function keep() {
  if (!state.selected) return;
  const events = [...state.rows.map((r) => r.ev), ...state.pending].slice(-MAX_ROWS);
  try {
    sessionStorage.setItem(storageKey(state.selected), JSON.stringify({ lastId: state.lastId, events }));
    sessionStorage.setItem('airlock-view:selected', state.selected);
    sessionStorage.setItem('airlock-view:tab', state.tab);
  } catch {
    // Storage full or refused: the page then starts from the recent lines again.
  }
}

function select(id) {
  if (state.selected === id && state.source) return;
  if (state.selected) keep();
  state.source?.close();
  state.selected = id;
  state.rows = [];
  state.pending = [];
  state.dropped = 0;
  state.gap = false;
  state.lastId = null;
  $('rows').textContent = '';
  $('detail').hidden = true;
  $('export').href = `/api/sessions/${encodeURIComponent(id)}/export.jsonl`;
  let kept = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(storageKey(id)) || 'null');
  } catch {
    kept = null;
  }
  if (kept && Array.isArray(kept.events)) {
    for (const ev of kept.events) receive(ev);
    state.lastId = kept.lastId ?? null;
    flush();
  }
  sessionStorage.removeItem(storageKey(id));
  const from = state.lastId ? `?lastEventId=${encodeURIComponent(state.lastId)}` : '';
  const source = new EventSource(`/api/sessions/${encodeURIComponent(id)}/events${from}`);
  state.source = source;
  source.onopen = () => setConn('live', 'live');
  source.onerror = () => setConn('down', source.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting…');
  source.addEventListener('gap', () => {
    state.gap = true;
    updateCounts();
  });
  source.onmessage = (e) => {
    state.lastId = e.lastEventId;
    let ev;
    try {
      ev = JSON.parse(e.data);
    } catch {
      return;
    }
    receive(ev);
  };
  renderSessions();
  renderRules();
}

function setConn(kind, text) {
  const el = $('conn');
  el.className = `conn ${kind}`;
  el.textContent = text;
}

// ---------------------------------------------------------------- sessions and rules

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

async function loadSessions() {
  try {
    state.sessions = await getJson('/api/sessions');
  } catch {
    setConn('down', 'view unreachable');
    return;
  }
  renderSessions();
  renderRules();
  renderBanner();
  if (!state.selected && state.sessions.length) {
    const remembered = sessionStorage.getItem('airlock-view:selected');
    select(state.sessions.some((s) => s.id === remembered) ? remembered : state.sessions[0].id);
  }
}

function renderSessions() {
  const list = $('session-list');
  list.textContent = '';
  $('no-sessions').hidden = state.sessions.length > 0;
  for (const s of state.sessions) {
    const li = document.createElement('li');
    li.className = `${s.id === state.selected ? 'selected' : ''} ${s.live ? '' : 'ended'}`;
    li.dataset.session = s.id;
    const id = document.createElement('div');
    id.className = 'sid';
    setText(id, s.id);
    const meta = document.createElement('div');
    meta.className = 'meta';
    const version = s.policyStatus ? ` @ ${s.policyStatus.version}` : '';
    setText(meta, `${s.policy}${version} · ${s.live ? 'live' : 'ended'} · allowed ${s.totals.allow}, denied ${s.totals.deny}${s.totals.would_deny ? `, would deny ${s.totals.would_deny}` : ''}`);
    li.append(id, meta);
    li.addEventListener('click', () => select(s.id));
    list.append(li);
  }
}

function renderBanner() {
  const failed = state.sessions.filter((s) => s.policyStatus && s.policyStatus.error);
  const banner = $('banner');
  banner.hidden = failed.length === 0;
  setText(banner, failed.map((s) => `Session ${s.id}: policy reload failed, still enforcing ${s.policyStatus.version}: ${s.policyStatus.error}`).join('\n'));
}

function renderRules() {
  const s = state.sessions.find((x) => x.id === state.selected);
  const body = $('rule-rows');
  body.textContent = '';
  if (!s) return;
  $('rules-note').textContent = s.rulesKnown
    ? `Policy ${s.policy}: each allow rule and the requests it let through.`
    : 'This session’s rules are not known to the view: only rules that matched are listed.';
  for (const r of s.rules) {
    const tr = document.createElement('tr');
    if (r.hits === 0) tr.className = 'never';
    tr.append(cell(r.label), cell(r.hits, 'hits mono'));
    body.append(tr);
  }
  for (const r of s.otherRules) {
    const tr = document.createElement('tr');
    tr.className = 'earlier';
    tr.append(cell(s.rulesKnown ? `${r.label} (earlier policy version)` : r.label), cell(r.hits, 'hits mono'));
    body.append(tr);
  }
}

// ---------------------------------------------------------------- inbox

async function post(path) {
  const res = await fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text };
  }
  if (!res.ok) throw new Error(body.error || `${res.status}`);
  return body;
}

async function loadInbox() {
  let items;
  try {
    items = await getJson('/api/inbox');
  } catch {
    return;
  }
  const total = items.reduce((n, i) => n + i.count, 0);
  const badge = $('inbox-count');
  badge.hidden = items.length === 0;
  badge.textContent = String(total);
  $('inbox-empty').hidden = items.length > 0;
  const bySession = new Map();
  for (const item of items) {
    if (!bySession.has(item.session)) bySession.set(item.session, []);
    bySession.get(item.session).push(item);
  }
  const root = $('inbox');
  root.textContent = '';
  for (const [session, list] of bySession) {
    const group = document.createElement('div');
    group.className = 'group';
    const h = document.createElement('h3');
    setText(h, `session ${session}`);
    const table = document.createElement('table');
    const head = document.createElement('tr');
    for (const t of ['host', 'path', 'methods', 'count', 'last seen', 'reason', '']) {
      const th = document.createElement('th');
      th.textContent = t;
      head.append(th);
    }
    table.append(head);
    list.sort((a, b) => a.host.localeCompare(b.host) || a.path.localeCompare(b.path));
    for (const item of list) {
      const tr = document.createElement('tr');
      tr.className = 'item';
      tr.dataset.item = item.id;
      const actions = document.createElement('td');
      actions.className = 'actions';
      const allow = document.createElement('button');
      allow.type = 'button';
      allow.textContent = 'Allow…';
      allow.className = 'allow';
      allow.addEventListener('click', () => preview(item));
      const dismiss = document.createElement('button');
      dismiss.type = 'button';
      dismiss.textContent = 'Dismiss';
      dismiss.addEventListener('click', () => act(item, 'dismiss'));
      actions.append(allow, ' ', dismiss);
      const reason = item.agentReason ? `${item.reason} — agent: ${item.agentReason}` : item.reason;
      tr.append(
        cell(originOf(item.scheme, item.host, item.port), 'target host'),
        cell(item.path || '(CONNECT: the whole host)', 'target path'),
        cell(item.methods.join(', '), 'mono'),
        cell(item.count, 'count mono'),
        cell(String(item.lastSeen).slice(11, 19), 'mono'),
        cell(reason, 'reason'),
        actions,
      );
      table.append(tr);
    }
    group.append(h, table);
    root.append(group);
  }
}

async function preview(item) {
  state.approving = item;
  $('approve').hidden = false;
  setText($('approve-what'), `${item.methods.join(',')} ${originOf(item.scheme, item.host, item.port)}${item.path}`);
  $('approve-diff').textContent = 'loading…';
  $('approve-file').textContent = '';
  $('approve-widens').hidden = true;
  $('approve-notes').hidden = true;
  $('approve-notes').textContent = '';
  $('approve-error').hidden = true;
  $('approve-confirm').disabled = true;
  try {
    const p = await post(`/api/inbox/${encodeURIComponent(item.id)}/preview`);
    if (state.approving !== item) return;
    setText($('approve-file'), `Change to ${p.file}:`);
    renderDiff(p.diff);
    if (p.widensCredential) {
      $('approve-widens').hidden = false;
      setText($('approve-widens'), `This widens a credential's reach: ${p.widensCredential}`);
    }
    for (const note of p.notes || []) {
      const li = document.createElement('li');
      setText(li, note);
      $('approve-notes').append(li);
    }
    $('approve-notes').hidden = !(p.notes && p.notes.length > 0);
    $('approve-confirm').disabled = false;
  } catch (err) {
    $('approve-diff').textContent = '';
    showApproveError(err.message);
  }
}

function renderDiff(diff) {
  const pre = $('approve-diff');
  pre.textContent = '';
  for (const line of String(diff).split('\n')) {
    const span = document.createElement('span');
    if (line.startsWith('+') && !line.startsWith('+++')) span.className = 'diff-add';
    else if (line.startsWith('-') && !line.startsWith('---')) span.className = 'diff-del';
    else if (line.startsWith('@@')) span.className = 'diff-hunk';
    setText(span, line + '\n', true);
    pre.append(span);
  }
}

function showApproveError(message) {
  const el = $('approve-error');
  el.hidden = false;
  setText(el, message);
}

async function confirmApprove() {
  const item = state.approving;
  if (!item) return;
  $('approve-confirm').disabled = true;
  try {
    const result = await post(`/api/inbox/${encodeURIComponent(item.id)}/approve`);
    closeApprove();
    message(result.message || 'allowed');
  } catch (err) {
    showApproveError(err.message);
  }
  loadInbox();
}

function closeApprove() {
  state.approving = null;
  $('approve').hidden = true;
}

async function act(item, action) {
  try {
    await post(`/api/inbox/${encodeURIComponent(item.id)}/${action}`);
  } catch (err) {
    message(err.message);
  }
  loadInbox();
}

function message(text) {
  const el = $('inbox-message');
  el.hidden = false;
  setText(el, text);
}

// ---------------------------------------------------------------- tabs and start

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const name of ['timeline', 'inbox', 'rules']) $(`tab-${name}`).hidden = name !== tab;
}

function start() {
  for (const b of document.querySelectorAll('.tabs button')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('f-action').addEventListener('change', applyFilters);
  $('f-text').addEventListener('input', applyFilters);
  $('pause').addEventListener('click', togglePause);
  $('copy-curl').addEventListener('click', copyCurl);
  $('detail-close').addEventListener('click', () => ($('detail').hidden = true));
  $('approve-confirm').addEventListener('click', confirmApprove);
  $('approve-cancel').addEventListener('click', closeApprove);
  window.addEventListener('pagehide', keep);
  showTab(state.tab);
  loadSessions();
  loadInbox();
  setInterval(loadSessions, 2000);
  setInterval(loadInbox, 1000);
}

start();
