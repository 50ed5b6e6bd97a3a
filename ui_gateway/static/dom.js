// Small DOM and formatting helpers shared by the dashboard modules.
//
// Nothing here (or anywhere in the dashboard) uses innerHTML: server data is untrusted
// (device ids, command names, results), so every piece of text goes into a text node.

/**
 * Build an element. `props` keys:
 *   class: className, text: textContent, dataset: {k: v}, on<event>: listener,
 *   anything else: an attribute (true → empty attribute, false/null/undefined → omitted).
 * Children: nodes, strings (become text nodes), arrays; null/undefined/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) el.dataset[k] = String(v);
      }
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  appendChildren(el, children);
  return el;
}

function appendChildren(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) appendChildren(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Set textContent only when it changes (avoids needless layout work on live updates). */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`dashboard markup is missing #${id}`);
  return el;
}

// ---------------------------------------------------------------------------------------------
// Time

const RFC3339 = /^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?$/;

/**
 * Parse an RFC 3339 time to epoch milliseconds, keeping sub-millisecond precision
 * (Date.parse drops digits past the millisecond, which matters for hop latencies).
 * A missing zone is read as UTC (the contract says every time is UTC). NaN when unparsable.
 */
export function parseTime(value) {
  if (typeof value !== 'string' || value === '') return NaN;
  const m = RFC3339.exec(value.trim());
  if (!m) return Date.parse(value);
  let zone = m[4] || 'Z';
  if (zone === 'z') zone = 'Z';
  else if (zone.length === 5) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const base = Date.parse(`${m[1]}T${m[2]}${zone}`);
  const fraction = m[3] ? Number(`0${m[3]}`) * 1000 : 0;
  return base + fraction;
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** Local wall-clock time with milliseconds, e.g. "14:03:07.123". */
export function formatClock(ms, { millis = true } = {}) {
  if (!Number.isFinite(ms)) return '—';
  const d = new Date(ms);
  const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return millis ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
}

/** Full local date and time, for tooltips. */
export function formatFull(ms) {
  if (!Number.isFinite(ms)) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${formatClock(ms)}`;
}

/** "just now", "3 s ago", "5 min ago", "2 h ago", "4 d ago"; "never" without a time. */
export function formatRelative(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return 'never';
  const seconds = Math.floor((now - ms) / 1000);
  if (seconds < 1) return 'just now'; // also absorbs small clock skew between server and browser
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

/** How long since `ms`: "a moment", "12 s", "4 min", "3 h 5 min", "2 d". */
export function formatSince(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '—';
  const seconds = Math.max(0, Math.floor((now - ms) / 1000));
  if (seconds < 1) return 'a moment';
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  return `${Math.floor(hours / 24)} d`;
}

/** A latency in milliseconds: "0.42 ms", "3.1 ms", "87 ms", "12,345 ms". */
export function formatLatency(ms) {
  if (!Number.isFinite(ms)) return '';
  const value = Math.max(0, ms);
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 10) return `${value.toFixed(1)} ms`;
  return `${Math.round(value).toLocaleString('en-US')} ms`;
}

// ---------------------------------------------------------------------------------------------
// Values

/** Compact JSON for summaries, cut to `max` characters. Never throws. */
export function compactJson(value, max = 120) {
  let text;
  if (typeof value === 'string') text = value;
  else {
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
    if (text === undefined) text = String(value);
  }
  return truncate(text, max);
}

/** Pretty JSON for result panes, cut to `max` characters. Never throws. */
export function prettyJson(value, max = 4000) {
  if (typeof value === 'string') return truncate(value, max);
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  return truncate(text === undefined ? String(value) : text, max);
}

export function truncate(text, max) {
  const s = String(text);
  return s.length > max ? `${s.slice(0, Math.max(0, max - 1))}…` : s;
}

export function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

export function formatCount(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toLocaleString('en-US') : '—';
}

/** Read/write sessionStorage without throwing when storage is unavailable. */
export const session = {
  get(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      window.sessionStorage.setItem(key, value);
    } catch {
      /* storage full or disabled: the dashboard still works, it just will not resume */
    }
  },
  remove(key) {
    try {
      window.sessionStorage.removeItem(key);
    } catch {
      /* ignore */
    }
  },
};

/** A short unique reference for request/reply correlation. */
const refPrefix = (() => {
  const bytes = new Uint8Array(4);
  (window.crypto || {}).getRandomValues?.(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
})();
let refCounter = 0;
export function newRef(kind = 'r') {
  refCounter += 1;
  return `${kind}-${refPrefix}-${Date.now().toString(36)}-${refCounter.toString(36)}`;
}
