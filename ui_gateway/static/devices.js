// The live fleet table and the console's device picker, both kept in id order.
//
// Records come from two sources that may arrive in any order: REST snapshots
// (GET /api/devices, GET /api/devices/{id}) and `presence` events (which may be replayed from an
// older cursor). Presence fields are merged by time, so an old event never overwrites a newer
// snapshot; `pending` and `last_command` are owned by REST (command events only trigger a
// throttled re-fetch of the device, see app.js).

import { h, setText, parseTime, formatRelative, formatFull, formatCount, formatSince } from './dom.js';

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
const REST_OWNED = new Set(['pending', 'last_command']);

/** The latest time the record says something about presence. */
function presenceTime(record) {
  const times = [parseTime(record.last_seen), parseTime(record.connected_since)].filter(Number.isFinite);
  return times.length ? Math.max(...times) : NaN;
}

/**
 * Merge an incoming device record into the one we hold.
 * @param {'rest'|'event'} source
 */
export function mergeDevice(current, incoming, source) {
  if (!current) return { ...incoming };
  const merged = { ...current };
  const newer = !(presenceTime(incoming) < presenceTime(current)); // NaN on either side → take it
  if (newer) {
    for (const [key, value] of Object.entries(incoming)) {
      if (!REST_OWNED.has(key)) merged[key] = value;
    }
  }
  for (const key of REST_OWNED) {
    if (!(key in incoming)) continue;
    if (source === 'rest' || !(key in current)) merged[key] = incoming[key];
  }
  return merged;
}

/** "connected for 4 min" for an online device, else "last seen 2 h ago" / "never". */
export function seenText(record, now = Date.now()) {
  const since = record.online === true ? parseTime(record.connected_since) : NaN;
  if (Number.isFinite(since)) return `connected for ${formatSince(since, now)}`;
  return formatRelative(parseTime(record.last_seen), now);
}

function isValidRecord(record) {
  return record !== null && typeof record === 'object' && typeof record.id === 'string' && record.id !== '';
}

export class FleetTable {
  /**
   * @param {{tbody: HTMLElement, picker: HTMLSelectElement, filter: HTMLInputElement,
   *          count: HTMLElement, empty: HTMLElement, onSelect: (id: string) => void}} els
   */
  constructor({ tbody, picker, filter, count, empty, onSelect, onOpen = null }) {
    Object.assign(this, { tbody, picker, filter, count, empty, onSelect, onOpen });
    /** @type {Map<string, {record: object, row: HTMLTableRowElement, cells: object, option: HTMLOptionElement}>} */
    this.entries = new Map();
    this.order = []; // ids, sorted
    this.selected = null;
    this.loaded = false;
    this.query = '';

    filter.addEventListener('input', () => {
      this.query = filter.value.trim().toLowerCase();
      for (const entry of this.entries.values()) this._applyFilter(entry);
      this._renderSummary();
    });
  }

  has(id) {
    return this.entries.has(id);
  }

  get(id) {
    return this.entries.get(id)?.record;
  }

  /** Insert or update one device. */
  upsert(record, source) {
    if (!isValidRecord(record)) return;
    const entry = this.entries.get(record.id);
    if (entry) {
      entry.record = mergeDevice(entry.record, record, source);
      this._renderRow(entry);
    } else {
      this._insert(mergeDevice(null, record, source));
    }
    this._renderSummary();
  }

  /**
   * Apply a full GET /api/devices snapshot. When `complete` (every shard answered) devices absent
   * from it are removed; otherwise they are kept, since their shard may just be unreachable.
   */
  replaceAll(records, { complete }) {
    const seen = new Set();
    for (const record of records) {
      if (!isValidRecord(record)) continue;
      seen.add(record.id);
      const entry = this.entries.get(record.id);
      if (entry) {
        entry.record = mergeDevice(entry.record, record, 'rest');
        this._renderRow(entry);
      } else this._insert(mergeDevice(null, record, 'rest'));
    }
    if (complete) {
      for (const id of [...this.entries.keys()]) if (!seen.has(id)) this.remove(id);
    }
    this.loaded = true;
    this._renderSummary();
  }

  remove(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.row.remove();
    entry.option.remove();
    this.entries.delete(id);
    const index = this._search(id);
    if (this.order[index] === id) this.order.splice(index, 1);
    this._renderSummary();
  }

  /** Mark a device selected (row highlight and picker value). */
  select(id) {
    if (this.selected && this.entries.has(this.selected)) {
      const previous = this.entries.get(this.selected).row;
      previous.classList.remove('selected');
      previous.removeAttribute('aria-current');
    }
    this.selected = id;
    const entry = id ? this.entries.get(id) : null;
    if (entry) {
      entry.row.classList.add('selected');
      entry.row.setAttribute('aria-current', 'true');
    }
    this.picker.value = entry ? id : '';
  }

  /** Refresh the relative "connected for" / "last seen" texts; called every second. */
  tick() {
    const now = Date.now();
    for (const entry of this.entries.values()) setText(entry.cells.lastSeenText, seenText(entry.record, now));
  }

  // -------------------------------------------------------------------------------------------

  _search(id) {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (collator.compare(this.order[mid], id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  _insert(record) {
    const id = record.id;
    const index = this._search(id);
    this.order.splice(index, 0, id);
    const nextId = this.order[index + 1];
    const next = nextId === undefined ? null : this.entries.get(nextId);

    const cells = {
      device: h('td', { dataset: { field: 'device' } }),
      online: h('td', { dataset: { field: 'online' } }),
      lastSeen: h('td', { dataset: { field: 'last_seen' } }),
      pending: h('td', { class: 'num', dataset: { field: 'pending' } }),
      reconnects: h('td', { class: 'num col-low', dataset: { field: 'reconnects' } }),
    };
    cells.idText = h('code', { class: 'device-id', text: id, title: id });
    cells.revoked = h('span', { class: 'tag tag-revoked', text: 'revoked' }); // attached only when revoked
    cells.device.append(cells.idText);
    if (this.onOpen) {
      cells.device.append(
        h('a', {
          class: 'device-open',
          href: `#device=${encodeURIComponent(id)}`,
          text: 'Details',
          title: `Open the page of ${id}: its commands, presence history and events`,
          'aria-label': `Details of ${id}`,
          onclick: (event) => event.stopPropagation(),
        }),
      );
    }
    cells.dot = h('span', { class: 'dot', 'aria-hidden': 'true' });
    cells.onlineText = h('span', { class: 'online-text' });
    cells.online.append(cells.dot, cells.onlineText);
    cells.lastSeenText = h('time');
    cells.lastSeen.append(cells.lastSeenText);

    const row = h(
      'tr',
      { dataset: { device: id }, tabindex: '0', title: `Select ${id} in the console` },
      cells.device,
      cells.online,
      cells.lastSeen,
      cells.pending,
      cells.reconnects,
    );
    const choose = () => this.onSelect(id);
    row.addEventListener('click', choose);
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        choose();
      }
    });

    const option = h('option', { value: id });
    const entry = { record, row, cells, option };
    this.entries.set(id, entry);

    this.tbody.insertBefore(row, next ? next.row : null);
    this.picker.insertBefore(option, next ? next.option : null);
    if (this.selected === id) this.select(id);
    this._renderRow(entry);
    this._applyFilter(entry);
  }

  _renderRow(entry) {
    const { record, row, cells, option } = entry;
    const online = record.online === true;
    const revoked = record.revoked === true;
    row.dataset.online = String(online);
    row.classList.toggle('revoked', revoked);
    if (revoked && !cells.revoked.isConnected) cells.device.append(cells.revoked);
    else if (!revoked && cells.revoked.isConnected) cells.revoked.remove();
    cells.device.dataset.value = record.id;
    cells.online.dataset.value = String(online);
    cells.dot.className = online ? 'dot dot-online' : 'dot dot-offline';
    setText(cells.onlineText, online ? 'online' : 'offline');

    // An online device shows how long it has been connected; an offline one, when it was last seen.
    const since = online ? parseTime(record.connected_since) : NaN;
    const shownTime = Number.isFinite(since) ? since : parseTime(record.last_seen);
    const raw = Number.isFinite(since) ? record.connected_since : record.last_seen;
    setText(cells.lastSeenText, seenText(record));
    cells.lastSeen.dataset.kind = Number.isFinite(since) ? 'connected' : 'last_seen';
    if (Number.isFinite(shownTime)) {
      cells.lastSeenText.setAttribute('datetime', raw);
      cells.lastSeenText.title = `${Number.isFinite(since) ? 'connected since' : 'last seen'} ${formatFull(shownTime)}`;
    } else {
      cells.lastSeenText.removeAttribute('datetime');
      cells.lastSeenText.removeAttribute('title');
    }

    setText(cells.pending, formatCount(record.pending));
    cells.pending.dataset.value = String(typeof record.pending === 'number' ? record.pending : '');
    setText(cells.reconnects, formatCount(record.reconnects_last_hour));

    const label = `${record.id}${revoked ? ' (revoked)' : online ? '' : ' (offline)'}`;
    setText(option, label);
  }

  _applyFilter(entry) {
    entry.row.hidden = this.query !== '' && !entry.record.id.toLowerCase().includes(this.query);
  }

  _renderSummary() {
    let online = 0;
    let shown = 0;
    for (const entry of this.entries.values()) {
      if (entry.record.online === true) online += 1;
      if (!entry.row.hidden) shown += 1;
    }
    const total = this.entries.size;
    const filtered = this.query !== '' ? ` · ${shown} shown` : '';
    setText(this.count, total ? `${total} devices · ${online} online${filtered}` : '');
    if (!this.loaded) setText(this.empty, 'Loading devices…');
    else if (total === 0) setText(this.empty, 'No devices provisioned yet.');
    else if (shown === 0) setText(this.empty, 'No device matches the filter.');
    this.empty.hidden = this.loaded && shown > 0;
  }
}
