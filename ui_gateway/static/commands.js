// Command records: merging (states only move forward) and the per-device "Commands" list with a
// hop-by-hop timeline: queued → sent → delivered → final state.

import { h, parseTime, formatClock, formatFull, formatLatency, compactJson, prettyJson, isPlainObject } from './dom.js';

/**
 * A late outcome (an ack the device sent after the command was already final, kept on the record
 * as `late: {status, result?, error?, at}`) as the words after the state: "but the device ran it
 * at 12:03:04: succeeded", "but the device received it at 12:03:04". Null when there is none.
 */
const RAN = Object.freeze(['succeeded', 'failed']); // the other final acks say "not run"

export function describeLate(record) {
  const late = isPlainObject(record) ? record.late : null;
  if (!isPlainObject(late) || typeof late.status !== 'string' || late.status === '') return null;
  const at = parseTime(late.at);
  const when = Number.isFinite(at) ? formatClock(at, { millis: false }) : 'a later time';
  if (late.status === 'received') return `but the device received it at ${when}`;
  if (late.status === record.state) return `and the device confirmed it at ${when}`;
  if (!RAN.includes(late.status)) return `and the device answered at ${when}: ${late.status}, not run`;
  let text = `but the device ran it at ${when}: ${late.status}`;
  if (late.error !== undefined && late.error !== null) text += ` (${compactJson(describeError(late.error), 80)})`;
  else if (late.result !== undefined && late.result !== null) text += ` ${compactJson(late.result, 80)}`;
  return text;
}

export const TERMINAL_STATES = Object.freeze([
  'succeeded',
  'failed',
  'rejected',
  'expired',
  'cancelled',
  'undeliverable',
  'timed_out',
]);
const TERMINAL = new Set(TERMINAL_STATES);
const HOPS = ['queued', 'sent', 'delivered'];
const RANK = { queued: 0, sent: 1, delivered: 2 };
const CANCELLABLE = new Set(['queued', 'sent']);

export function isTerminal(state) {
  return TERMINAL.has(state);
}

export function stateRank(state) {
  if (TERMINAL.has(state)) return 3;
  return RANK[state] ?? -1;
}

export function isCommandRecord(value) {
  return isPlainObject(value) && typeof value.id === 'string' && value.id !== '' && typeof value.state === 'string';
}

/**
 * Merge two copies of one command. The copy further along wins (a replayed or slow copy never
 * moves a command backwards; the first terminal state is final); hop times are united.
 */
export function mergeCommand(current, incoming) {
  if (!current) return incoming;
  const a = stateRank(current.state);
  const b = stateRank(incoming.state);
  let base = incoming;
  let other = current;
  if (b < a || (a === 3 && b === 3 && current.state !== incoming.state)) {
    base = current;
    other = incoming;
  }
  const times = { ...(isPlainObject(other.times) ? other.times : {}), ...(isPlainObject(base.times) ? base.times : {}) };
  const attempts = Math.max(Number(current.attempts) || 0, Number(incoming.attempts) || 0);
  return { ...other, ...base, times, attempts };
}

function safeClass(state) {
  return String(state).toLowerCase().replace(/[^a-z0-9_-]/g, '') || 'unknown';
}

/** Sort key: issue time (newest first), then the time-ordered id. */
function issuedAt(record) {
  const t = parseTime(record.issued_at);
  if (Number.isFinite(t)) return t;
  const q = parseTime(isPlainObject(record.times) ? record.times.queued : undefined);
  return Number.isFinite(q) ? q : Infinity; // unknown time: treat as newest
}

function newerFirst(a, b) {
  const ta = issuedAt(a);
  const tb = issuedAt(b);
  if (ta !== tb) return ta > tb ? -1 : 1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/**
 * The hop-by-hop timeline of a command: queued, sent, delivered and the final hop, each with
 * its time and the latency from the previous hop that was reached.
 */
export function timeline(record) {
  const times = isPlainObject(record.times) ? record.times : {};
  const terminal = isTerminal(record.state);
  const rank = stateRank(record.state);
  const hops = HOPS.map((name, index) => ({ name, at: parseTime(times[name]), raw: times[name], index }));
  const finalName = terminal ? record.state : 'final';
  hops.push({ name: finalName, at: terminal ? parseTime(times[record.state]) : NaN, raw: terminal ? times[record.state] : undefined, index: 3, final: true });

  let previous = NaN;
  let nextMarked = false;
  for (const hop of hops) {
    if (hop.final) hop.status = terminal ? 'reached' : 'waiting';
    else if (Number.isFinite(hop.at) || rank === hop.index) hop.status = 'reached';
    else hop.status = rank > hop.index ? 'skipped' : 'waiting';
    // The first hop not reached yet is the one the command is waiting for.
    hop.next = hop.status === 'waiting' && !nextMarked;
    if (hop.next) nextMarked = true;
    hop.latency = Number.isFinite(hop.at) && Number.isFinite(previous) ? hop.at - previous : NaN;
    if (Number.isFinite(hop.at)) previous = hop.at;
  }
  const first = hops.find((hop) => Number.isFinite(hop.at));
  const last = hops[3];
  const total = first && Number.isFinite(last.at) ? last.at - first.at : NaN;
  return { hops, total };
}

export class CommandList {
  /**
   * @param {{list: HTMLElement, empty: HTMLElement, title: HTMLElement,
   *          onCancel: (record: object) => void, max?: number}} options
   */
  constructor({ list, empty, title, onCancel, max = 50 }) {
    Object.assign(this, { list, empty, title, onCancel, max });
    this.device = null;
    /** @type {Map<string, {record: object, el: HTMLLIElement}>} */
    this.items = new Map();
    /** Notes shown under a command (e.g. a refused cancel), kept across re-renders. */
    this.notes = new Map();
    this.cancelling = new Set();
    this._renderEmpty();
  }

  /** Show the commands of another device (clears the list). */
  setDevice(id) {
    this.device = id || null;
    this.items.clear();
    this.notes.clear();
    this.cancelling.clear();
    this.list.replaceChildren();
    this.title.textContent = this.device ? this.device : '';
    this._renderEmpty();
  }

  has(id) {
    return this.items.has(id);
  }

  /** Add or update a command of the shown device (other devices' commands are ignored). */
  upsert(record) {
    if (!isCommandRecord(record) || this.device === null || record.device !== this.device) return;
    const item = this.items.get(record.id);
    if (item) {
      const merged = mergeCommand(item.record, record);
      item.record = merged;
      this._render(item);
    } else {
      const el = h('li', { class: 'cmd', dataset: { command: record.id } });
      const entry = { record: mergeCommand(null, record), el };
      this.items.set(record.id, entry);
      this._render(entry);
      this._place(entry);
      this._trim();
    }
    this._renderEmpty();
  }

  /** Merge a history page (newest first). */
  loadHistory(records) {
    for (const record of records) this.upsert(record);
    this._renderEmpty(true);
  }

  /** The history could not be loaded: say so where the list would be. */
  loadFailed(message) {
    if (this.items.size === 0) {
      this.empty.textContent = `Could not load the commands: ${message}`;
      this.empty.hidden = false;
    }
  }

  setNote(id, text) {
    if (text) this.notes.set(id, text);
    else this.notes.delete(id);
    const item = this.items.get(id);
    if (item) this._render(item);
  }

  setCancelling(id, on) {
    if (on) this.cancelling.add(id);
    else this.cancelling.delete(id);
    const item = this.items.get(id);
    if (item) this._render(item);
  }

  // -------------------------------------------------------------------------------------------

  _place(entry) {
    for (const child of this.list.children) {
      const other = this.items.get(child.dataset.command);
      if (other && newerFirst(entry.record, other.record) < 0) {
        this.list.insertBefore(entry.el, child);
        return;
      }
    }
    this.list.appendChild(entry.el);
  }

  _trim() {
    while (this.items.size > this.max && this.list.lastElementChild) {
      const el = this.list.lastElementChild;
      const id = el.dataset.command;
      el.remove();
      this.items.delete(id);
      this.notes.delete(id);
      this.cancelling.delete(id);
    }
  }

  _renderEmpty(loaded = false) {
    if (this.device === null) {
      this.empty.textContent = 'Select a device to see its commands.';
      this.empty.hidden = false;
    } else if (this.items.size === 0) {
      this.empty.textContent = loaded ? 'No commands for this device yet.' : 'Loading commands…';
      this.empty.hidden = false;
    } else this.empty.hidden = true;
  }

  _render(entry) {
    const { record, el } = entry;
    const state = String(record.state);
    el.dataset.state = state;
    el.className = `cmd cmd-${safeClass(state)}`;

    const { hops, total } = timeline(record);
    const head = h(
      'div',
      { class: 'cmd-head' },
      h('span', { class: `badge state-${safeClass(state)}`, text: state }),
      h('code', { class: 'cmd-name', text: String(record.name ?? '') }),
      h('code', { class: 'cmd-id', text: record.id, title: `command ${record.id}` }),
    );
    const meta = [];
    if (Number(record.attempts) > 1) meta.push(`${record.attempts} attempts`);
    if (Number.isFinite(total)) meta.push(`total ${formatLatency(total)}`);
    const expires = parseTime(record.expires_at);
    if (Number.isFinite(expires) && !isTerminal(state)) meta.push(`expires ${formatClock(expires, { millis: false })}`);
    if (meta.length) head.append(h('span', { class: 'cmd-meta', text: meta.join(' · ') }));
    if (CANCELLABLE.has(state)) {
      const busy = this.cancelling.has(record.id);
      head.append(
        h('button', {
          type: 'button',
          class: 'btn btn-small btn-danger cmd-cancel',
          text: busy ? 'Cancelling…' : 'Cancel',
          disabled: busy,
          'aria-label': `Cancel command ${record.id}`,
          onclick: () => this.onCancel(record),
        }),
      );
    }

    const steps = h('ol', { class: 'timeline', 'aria-label': 'Delivery timeline' });
    for (const hop of hops) {
      const timeText = Number.isFinite(hop.at) ? formatClock(hop.at) : hop.status === 'waiting' ? '' : '—';
      let hopClass = hop.next ? ' hop-next' : '';
      if (hop.final && isTerminal(state)) hopClass += ` hop-final state-${safeClass(state)}`;
      steps.append(
        h(
          'li',
          { class: `hop hop-${hop.status}${hopClass}`, dataset: { hop: hop.name } },
          h('span', { class: 'hop-name', text: hop.name }),
          h('time', {
            class: 'hop-time',
            text: timeText,
            datetime: typeof hop.raw === 'string' ? hop.raw : null,
            title: Number.isFinite(hop.at) ? formatFull(hop.at) : null,
          }),
          h('span', { class: 'hop-latency', text: Number.isFinite(hop.latency) ? `+${formatLatency(hop.latency)}` : '' }),
        ),
      );
    }

    const body = [head, steps];
    const args = isPlainObject(record.args) && Object.keys(record.args).length ? record.args : null;
    if (args) body.push(h('p', { class: 'cmd-args' }, h('span', { class: 'label', text: 'args ' }), h('code', { text: compactJson(args, 160) })));
    if (isTerminal(state)) {
      if (record.error !== undefined && record.error !== null) {
        body.push(h('pre', { class: 'cmd-output cmd-error', text: describeError(record.error) }));
      } else if (record.result !== undefined && record.result !== null) {
        body.push(h('pre', { class: 'cmd-output cmd-result', text: prettyJson(record.result) }));
      }
    }
    const late = describeLate(record);
    if (late) {
      body.push(h('p', { class: 'cmd-late', dataset: { lateStatus: String(record.late.status) }, text: `${state} — ${late}` }));
    }
    const note = this.notes.get(record.id);
    if (note) body.push(h('p', { class: 'cmd-note', role: 'alert', text: note }));
    el.replaceChildren(...body);
  }
}

/** An error value as text: "code: message" for {code, message}, else the JSON. */
export function describeError(error) {
  if (typeof error === 'string') return error;
  if (isPlainObject(error) && (typeof error.code === 'string' || typeof error.message === 'string')) {
    return [error.code, error.message].filter((part) => typeof part === 'string' && part).join(': ');
  }
  return prettyJson(error);
}
