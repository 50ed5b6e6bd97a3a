// The device page (#device-page, opened by #device=<id> in the address, from the fleet table's
// "Details" link): one device's state, its commands (with the console's timeline and cancel),
// its presence history and the events it published. Loaded over REST when it opens, then kept
// up to date from the live stream while it is open.

import { h, setText, parseTime, formatClock, formatFull, formatCount, compactJson, isPlainObject } from './dom.js';
import { devicePath } from './api.js';
import { CommandList } from './commands.js';
import { seenText } from './devices.js';

const LIMIT = 50;

export class DevicePage {
  /**
   * @param {{root: HTMLElement, api: {get: Function}, onCancel: (record: object) => void,
   *          onClose: () => void}} options
   */
  constructor({ root, api, onCancel, onClose }) {
    Object.assign(this, { root, api, onClose });
    this.id = null;
    this.record = null;
    this.generation = 0;
    this.title = h('h2', { id: 'device-page-title', class: 'device-page-title device-id', tabindex: '-1' });
    this.facts = h('dl', { class: 'device-facts' });
    this.commandsEmpty = h('p', { class: 'empty', text: 'Loading commands…' });
    this.commandsEl = h('ol', { id: 'device-page-commands', class: 'command-list', 'aria-label': 'Commands of this device' });
    this.presenceEl = h('ol', { id: 'device-page-presence', class: 'device-history', 'aria-label': 'Presence history, newest first' });
    this.eventsEl = h('ol', { id: 'device-page-events', class: 'device-history', 'aria-label': 'Device events, newest first' });
    this.presenceEmpty = h('p', { class: 'empty', text: 'Loading…' });
    this.eventsEmpty = h('p', { class: 'empty', text: 'Loading…' });
    this.commands = new CommandList({ list: this.commandsEl, empty: this.commandsEmpty, title: h('span'), onCancel, max: LIMIT });
    const close = h('button', { type: 'button', class: 'btn btn-small btn-plain', text: 'Close', onclick: () => this.onClose() });
    const card = h(
      'section',
      { class: 'device-page-card', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'device-page-title' },
      h('div', { class: 'device-page-head' }, this.title, close),
      this.facts,
      h(
        'div',
        { class: 'device-page-body' },
        h('section', { class: 'device-page-section device-page-commands' }, h('h3', { text: 'Commands' }), this.commandsEmpty, this.commandsEl),
        h(
          'section',
          { class: 'device-page-section' },
          h('h3', { text: 'Presence history' }),
          this.presenceEmpty,
          this.presenceEl,
          h('h3', { text: 'Events' }),
          this.eventsEmpty,
          this.eventsEl,
        ),
      ),
    );
    root.replaceChildren(card);
    root.addEventListener('click', (event) => {
      if (event.target === root) this.onClose();
    });
  }

  get openId() {
    return this.id;
  }

  async open(id) {
    this.id = id;
    const mine = ++this.generation;
    this.root.hidden = false;
    document.body.classList.add('device-page-open');
    setText(this.title, id);
    this.commands.setDevice(id);
    this.presenceEl.replaceChildren();
    this.eventsEl.replaceChildren();
    this.presenceEmpty.hidden = false;
    this.eventsEmpty.hidden = false;
    setText(this.presenceEmpty, 'Loading…');
    setText(this.eventsEmpty, 'Loading…');
    this.title.focus();
    const path = devicePath(id);
    const [device, commands, presence, events] = await Promise.allSettled([
      this.api.get(path),
      this.api.get(`${path}/commands?limit=${LIMIT}`),
      this.api.get(`${path}/events?kind=presence&limit=${LIMIT}`),
      this.api.get(`${path}/events?kind=device_event&limit=${LIMIT}`),
    ]);
    if (mine !== this.generation) return;
    if (device.status === 'fulfilled' && isPlainObject(device.value)) this.setDevice(device.value);
    else this.renderFacts({ id }, device.reason?.message ?? 'could not be loaded');
    if (commands.status === 'fulfilled' && Array.isArray(commands.value?.commands)) this.commands.loadHistory(commands.value.commands);
    else this.commands.loadFailed(commands.reason?.message ?? 'no reply');
    this.fillHistory(presence, this.presenceEl, this.presenceEmpty, 'No presence changes kept.');
    this.fillHistory(events, this.eventsEl, this.eventsEmpty, 'No events kept.');
  }

  close() {
    this.id = null;
    this.generation += 1;
    this.root.hidden = true;
    document.body.classList.remove('device-page-open');
  }

  /** A newer device record (REST or a presence event). */
  setDevice(record) {
    if (!isPlainObject(record) || record.id !== this.id) return;
    this.record = { ...(this.record?.id === record.id ? this.record : {}), ...record };
    this.renderFacts(this.record);
  }

  upsertCommand(record) {
    if (this.id !== null && record.device === this.id) this.commands.upsert(record);
  }

  /** A live presence change or device event of the open device. */
  addEvent(kind, data) {
    if (this.id === null || !isPlainObject(data)) return;
    if (kind === 'presence' && data.id === this.id) {
      this.setDevice(data);
      this.prepend(this.presenceEl, this.presenceEmpty, { kind, at: data.online ? data.connected_since ?? data.last_seen : data.last_seen, data });
    } else if (kind === 'device_event' && data.device === this.id) {
      this.prepend(this.eventsEl, this.eventsEmpty, { kind, at: data.at, data });
    }
  }

  tick() {
    if (this.record && this.seen) setText(this.seen, seenText(this.record));
  }

  // -------------------------------------------------------------------------------------------

  renderFacts(record, error = null) {
    const online = record.online === true;
    this.seen = h('dd', { dataset: { fact: 'seen' }, text: seenText(record) });
    const facts = [
      ['State', h('dd', { dataset: { fact: 'state' } }, h('span', { class: online ? 'dot dot-online' : 'dot dot-offline', 'aria-hidden': 'true' }), record.revoked ? 'revoked' : online ? 'online' : 'offline')],
      [online ? 'Connected' : 'Last seen', this.seen],
      ['Pending', h('dd', { dataset: { fact: 'pending' }, text: formatCount(record.pending) })],
      ['Reconnects (1 h)', h('dd', { text: formatCount(record.reconnects_last_hour) })],
      ['Agent', h('dd', { class: 'mono', text: record.agent === undefined || record.agent === null ? '—' : compactJson(record.agent, 80) })],
      ['Provisioned', h('dd', { text: formatFull(parseTime(record.provisioned_at)) || '—' })],
    ];
    if (error) facts.push(['Error', h('dd', { text: error })]);
    this.facts.replaceChildren(...facts.map(([label, value]) => h('div', { class: 'device-fact' }, h('dt', { text: label }), value)));
  }

  fillHistory(settled, list, empty, none) {
    if (settled.status !== 'fulfilled' || !Array.isArray(settled.value?.events)) {
      setText(empty, `Could not load: ${settled.reason?.message ?? 'no reply'}`);
      return;
    }
    list.replaceChildren(...settled.value.events.filter(isPlainObject).map((event) => this.entry(event)));
    setText(empty, none);
    empty.hidden = list.childElementCount > 0;
  }

  prepend(list, empty, event) {
    list.insertBefore(this.entry(event), list.firstChild);
    while (list.childElementCount > LIMIT) list.lastElementChild.remove();
    empty.hidden = true;
  }

  entry({ kind, at, data }) {
    const time = parseTime(at);
    const d = isPlainObject(data) ? data : {};
    let text;
    if (kind === 'presence') {
      text = d.revoked === true ? 'revoked' : d.online === true ? 'online' : 'offline';
      if (d.online === true && d.agent !== undefined && d.agent !== null) text += ` · agent ${compactJson(d.agent, 60)}`;
    } else text = `${typeof d.name === 'string' ? d.name : ''} ${d.data === undefined ? '' : compactJson(d.data, 120)}`.trim();
    return h(
      'li',
      { class: `device-history-item history-${kind === 'presence' ? (d.online === true ? 'online' : 'offline') : 'event'}`, dataset: { kind } },
      h('time', { text: formatClock(time, { millis: false }), title: formatFull(time), datetime: typeof at === 'string' ? at : null }),
      h('span', { text }),
    );
  }
}
