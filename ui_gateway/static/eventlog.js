// The live event stream: newest on top, at most `max` entries. Events are buffered and drawn
// once per animation frame so a burst of events costs one layout, not hundreds.

import { h, parseTime, formatClock, formatFull, compactJson, isPlainObject } from './dom.js';
import { describeError, describeLate, isTerminal } from './commands.js';

function str(value) {
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
}

/** {device, summary, at} for one event, whatever its kind. */
export function describeEvent(kind, data) {
  const d = isPlainObject(data) ? data : {};
  const times = isPlainObject(d.times) ? d.times : {};
  switch (kind) {
    case 'command': {
      let summary = `${str(d.name)} → ${str(d.state)}`;
      if (isTerminal(d.state) && d.error !== undefined && d.error !== null) {
        summary += `: ${compactJson(describeError(d.error), 80)}`;
      } else if (d.state === 'succeeded' && d.result !== undefined && d.result !== null) {
        summary += ` ${compactJson(d.result, 80)}`;
      }
      const late = describeLate(d);
      if (late) summary += ` — ${late}`;
      return { device: str(d.device), summary, at: parseTime(times[d.state] ?? d.issued_at), detail: `command ${str(d.id)}` };
    }
    case 'presence': {
      let summary = d.revoked === true ? 'revoked' : d.online === true ? 'online' : 'offline';
      if (d.online === true && d.agent !== undefined && d.agent !== null) summary += ` · agent ${compactJson(d.agent, 60)}`;
      const at = d.online === true ? parseTime(d.connected_since ?? d.last_seen) : parseTime(d.last_seen);
      return { device: str(d.id), summary, at, detail: '' };
    }
    case 'device_event':
      return {
        device: str(d.device),
        summary: `${str(d.name)} ${d.data === undefined ? '' : compactJson(d.data, 120)}`.trim(),
        at: parseTime(d.at),
        detail: '',
      };
    default:
      return { device: str(d.device ?? d.id), summary: compactJson(d, 120), at: NaN, detail: '' };
  }
}

export class EventLog {
  /**
   * @param {{list: HTMLElement, count: HTMLElement, onDevice: (id: string) => void, max?: number}} options
   */
  constructor({ list, count, onDevice, max = 200 }) {
    Object.assign(this, { list, count, onDevice, max });
    this.queue = [];
    this.total = 0;
    this.frame = 0;
  }

  add(kind, data) {
    this.total += 1;
    this.queue.push({ kind: str(kind) || 'unknown', data, receivedAt: Date.now() });
    if (this.queue.length > this.max) this.queue.splice(0, this.queue.length - this.max);
    if (!this.frame) this.frame = requestAnimationFrame(() => this._flush());
  }

  clear() {
    this.queue = [];
    this.total = 0;
    this.list.replaceChildren();
    this._renderCount();
  }

  _flush() {
    this.frame = 0;
    const batch = this.queue;
    this.queue = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i -= 1) fragment.appendChild(this._entry(batch[i]));
    this.list.insertBefore(fragment, this.list.firstChild);
    while (this.list.childElementCount > this.max) this.list.lastElementChild.remove();
    this._renderCount();
  }

  _entry({ kind, data, receivedAt }) {
    const { device, summary, at, detail } = describeEvent(kind, data);
    const time = Number.isFinite(at) ? at : receivedAt;
    const deviceNode = device
      ? h('button', {
          type: 'button',
          class: 'linklike device-id',
          text: device,
          title: `Select ${device} in the console`,
          onclick: () => this.onDevice(device),
        })
      : h('span', { class: 'muted', text: '—' });
    return h(
      'li',
      { class: `ev ev-${kind.replace(/[^a-z_]/g, '')}`, dataset: { kind, device: device || null } },
      h('time', { class: 'ev-time', text: formatClock(time), title: formatFull(time) }),
      h('span', { class: 'ev-kind', text: kind.replace('_', ' ') }),
      deviceNode,
      h('span', { class: 'ev-summary', text: summary, title: detail || null }),
    );
  }

  _renderCount() {
    const shown = this.list.childElementCount;
    this.count.textContent = this.total ? `${this.total.toLocaleString('en-US')} received · latest ${shown} shown` : '';
  }
}
