// The fleet monitoring panel (#fleet-panel): polls GET /api/fleet every 2 s and shows
// - the figures: online, offline, total and pending;
// - three live charts over the last 10 minutes (terminal commands per second, end-to-end latency
//   p50/p99, online devices against the fleet size), kept in a bounded ring of samples;
// - the broker strip (#broker-panel): connection, version and Mosquitto's $SYS figures;
// - the hop latency table (#hop-table) and the slowest / most pending / most failing devices.
// Fields it does not know are ignored and missing ones are skipped. Device ids are untrusted:
// they only ever reach the page as text.

import { h, setText, formatCount, formatClock, formatLatency, isPlainObject } from './dom.js';
import { Ring, Sparkline, niceMax, logFloor, formatRate, formatMs, formatBytes, formatDuration, formatWindow } from './charts.js';

const FIGURES = [
  { key: 'online', label: 'Online', read: (data) => data.devices?.online },
  { key: 'offline', label: 'Offline', read: (data) => data.devices?.offline },
  { key: 'total', label: 'Devices', read: (data) => data.devices?.total },
  { key: 'pending', label: 'Pending commands', read: (data) => data.pending },
];

/** The states a command ends in: throughput counts transitions into these. */
const TERMINAL_STATES = ['succeeded', 'failed', 'rejected', 'expired', 'cancelled', 'undeliverable', 'timed_out'];

const HOPS = [
  { key: 'accepted_to_sent', label: 'Accepted → sent' },
  { key: 'sent_to_delivered', label: 'Sent → delivered' },
  { key: 'delivered_to_final', label: 'Delivered → final' },
  { key: 'end_to_end', label: 'End to end' },
];

const CHART_WINDOW_MS = 10 * 60 * 1000; // what the sparklines show
const SAMPLE_CAPACITY = 300; // 10 minutes at one sample every 2 s
const STALE_BROKER_SECONDS = 15; // $SYS arrives every few seconds: older figures are flagged

const isNum = (value) => typeof value === 'number' && Number.isFinite(value);
const nonNegative = (value) => (isNum(value) && value >= 0 ? value : null);
const text = (value) => (typeof value === 'string' && value.trim() !== '' ? value.trim() : null);

/** A latency bound in ms as the API gives it: a number, null (no samples), or unusable. */
function readBound(value) {
  if (value === Infinity) return Infinity;
  return isNum(value) && value >= 0 ? value : null;
}

function formatBound(value) {
  if (value === Infinity) return `${formatMs(value)} ms`;
  return value === null ? '—' : `≤ ${formatMs(value)} ms`;
}

// Broker strip fields, in display order. `read` gets the broker object and returns a value or
// undefined/null when there is nothing to show.
const BROKER_FIELDS = [
  {
    key: 'connected',
    label: 'Connected',
    read: (b) => (typeof b.connected === 'boolean' ? b.connected : null),
    format: (v) => (v ? 'yes' : 'no'),
    tone: (v) => (v ? 'good' : 'bad'),
  },
  { key: 'version', label: 'Version', read: (b) => text(b.version), format: (v) => v },
  { key: 'clients_connected', label: 'Clients', figure: true, format: formatCount },
  { key: 'messages_received_per_min', label: 'Msgs in', figure: true, format: (v) => `${formatRate(v)}/min` },
  { key: 'messages_sent_per_min', label: 'Msgs out', figure: true, format: (v) => `${formatRate(v)}/min` },
  { key: 'stored_messages', label: 'Stored', figure: true, format: formatCount },
  {
    key: 'publish_dropped_total',
    label: 'Dropped',
    figure: true,
    format: formatCount,
    tone: (v) => (v > 0 ? 'warn' : null),
  },
  { key: 'heap_bytes', label: 'Heap', figure: true, format: formatBytes },
  { key: 'uptime_seconds', label: 'Uptime', figure: true, format: formatDuration },
  {
    key: 'age_seconds',
    label: '$SYS',
    read: (b) => (isNum(b.age_seconds) && b.age_seconds > STALE_BROKER_SECONDS ? b.age_seconds : null),
    format: (v) => `${formatDuration(v)} old`,
    tone: () => 'warn',
  },
];

/**
 * @param {HTMLElement} root the #fleet-panel element
 * @param {{api: {get: Function}, interval?: number, onDevice?: (id: string) => void}} options
 */
export function createFleetPanel(root, { api, interval = 2000, onDevice = null }) {
  const values = {};
  const list = h('dl', { class: 'figures' });
  for (const figure of FIGURES) {
    values[figure.key] = h('dd', { class: 'figure-value', dataset: { figure: figure.key }, text: '—' });
    list.append(h('div', { class: `figure figure-${figure.key}` }, h('dt', { text: figure.label }), values[figure.key]));
  }
  const status = h('p', { class: 'figures-status', role: 'status', text: 'loading…' });
  const extras = h('div', { class: 'figures-extras' });
  root.replaceChildren(list, status, extras);
  const monitor = createMonitor(extras, { interval, onDevice });

  let timer = null;
  let controller = null;
  let running = false;
  let generation = 0; // bumped by start/stop so a late reply of an old loop cannot fork the loop

  async function refresh() {
    timer = null;
    if (!running) return;
    const mine = generation;
    if (document.hidden) {
      schedule(); // do not poll a hidden tab; visibilitychange refreshes at once
      return;
    }
    const abort = new AbortController();
    controller = abort;
    try {
      const data = await api.get('/api/fleet', { signal: abort.signal });
      if (mine !== generation) return;
      render(isPlainObject(data) ? data : {});
      setText(status, `updated ${formatClock(Date.now(), { millis: false })}`);
      root.classList.remove('stale');
    } catch (err) {
      if (mine !== generation || (err && err.name === 'AbortError')) return;
      setText(status, `not updated: ${err && err.message ? err.message : 'request failed'}`);
      root.classList.add('stale');
      monitor.redraw(Date.now()); // time moves on: the charts show the gap
    } finally {
      if (controller === abort) controller = null;
    }
    schedule();
  }

  function schedule() {
    if (running && timer === null) timer = setTimeout(refresh, interval);
  }

  function render(data) {
    for (const figure of FIGURES) {
      let value;
      try {
        value = figure.read(data);
      } catch {
        value = undefined;
      }
      setText(values[figure.key], formatCount(value));
    }
    renderExtras(data);
  }

  function renderExtras(data) {
    try {
      monitor.render(data, Date.now());
    } catch (err) {
      // A malformed reply must not stop the figures above from updating.
      console.warn('fleet panel: could not render the monitoring figures', err);
    }
  }

  function onVisibility() {
    if (!document.hidden && running && controller === null) {
      clearTimeout(timer);
      timer = null;
      refresh();
    }
  }
  document.addEventListener('visibilitychange', onVisibility);

  return {
    start() {
      if (running) return;
      running = true;
      generation += 1;
      monitor.resetBaseline();
      refresh();
    },
    stop() {
      running = false;
      generation += 1;
      clearTimeout(timer);
      timer = null;
      controller?.abort();
      controller = null;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The monitoring part of the panel: charts, broker strip, hop table, top lists.

function createMonitor(container, { interval, onDevice }) {
  const samples = new Ring(SAMPLE_CAPACITY);
  // Samples further apart than this are not joined by a line (a hidden tab, failed polls).
  const gapMs = Math.max(3 * interval, 7000);
  let baseline = null; // {t, terminal, shards} of the previous poll, for the throughput rate

  const charts = {
    throughput: chartCard({
      key: 'throughput',
      title: 'Throughput',
      series: [{ key: 'rate', label: 'commands/s', className: 'spark-blue', area: true }],
      unit: 'cmd/s',
      hint: 'Commands reaching a final state (succeeded, failed, rejected, expired, cancelled, undeliverable, timed out) per second',
    }),
    latency: chartCard({
      key: 'latency',
      title: 'Latency · end to end',
      hint: 'End-to-end latency percentiles over the server window: upper bounds of the histogram buckets, in ms',
      series: [
        { key: 'p99', label: 'p99', className: 'spark-amber' },
        { key: 'p50', label: 'p50', className: 'spark-blue' },
      ],
      legend: true,
      readings: [
        { key: 'p50', label: 'p50' },
        { key: 'p99', label: 'p99' },
      ],
    }),
    online: chartCard({
      key: 'online',
      title: 'Online devices',
      hint: 'Devices connected now; the dashed line is the fleet size',
      series: [
        { key: 'total', label: 'total', className: 'spark-muted', reference: true },
        { key: 'online', label: 'online', className: 'spark-green', area: true },
      ],
      legend: true,
    }),
  };

  const chartRow = h('div', { class: 'monitor-charts' }, Object.values(charts).map((c) => c.element));

  // Broker strip.
  const brokerList = h('dl', { class: 'broker-fields' });
  const brokerPanel = h(
    'section',
    { id: 'broker-panel', class: 'broker-strip', 'aria-label': 'MQTT broker', hidden: true },
    h('h3', { class: 'broker-title', text: 'Broker' }),
    brokerList,
  );
  const brokerItems = new Map(); // key → {item, value}

  // Hop latency table.
  const hopRows = {};
  const hopBody = h('tbody');
  for (const hop of HOPS) {
    const cells = {
      count: h('td', { class: 'num', dataset: { col: 'count' }, text: '—' }),
      p50: h('td', { class: 'num', dataset: { col: 'p50' }, text: '—' }),
      p99: h('td', { class: 'num', dataset: { col: 'p99' }, text: '—' }),
      bar50: h('span', { class: 'hop-bar-p50' }),
      bar99: h('span', { class: 'hop-bar-p99' }),
    };
    const barCell = h(
      'td',
      { class: 'hop-bar-cell', 'aria-hidden': 'true' },
      h('span', { class: 'hop-bar' }, cells.bar99, cells.bar50),
    );
    const row = h(
      'tr',
      { dataset: { hop: hop.key }, class: hop.key === 'end_to_end' ? 'hop-total' : null },
      h('th', { scope: 'row', text: hop.label }),
      cells.count,
      cells.p50,
      cells.p99,
      barCell,
    );
    hopRows[hop.key] = cells;
    hopBody.append(row);
  }
  const hopNote = h('span', { class: 'monitor-note', text: '' });
  const hopCard = h(
    'section',
    { class: 'monitor-card hop-card', 'aria-labelledby': 'hop-title' },
    h('div', { class: 'monitor-card-head' }, h('h3', { id: 'hop-title', text: 'Hop latency' }), hopNote),
    h(
      'table',
      { id: 'hop-table', class: 'hop-table' },
      h('caption', { class: 'sr-only', text: 'Latency of each hop: number of commands, p50 and p99 upper bounds in milliseconds' }),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col', text: 'Hop' }),
          h('th', { scope: 'col', class: 'num', text: 'Count' }),
          h('th', { scope: 'col', class: 'num', text: 'p50' }),
          h('th', { scope: 'col', class: 'num', text: 'p99' }),
          h('th', { scope: 'col', class: 'hop-bar-head' }, h('span', { class: 'sr-only', text: 'p50 and p99 compared' })),
        ),
      ),
      hopBody,
    ),
  );

  // Top lists.
  const ranks = {
    slowest: rankCard({ key: 'slowest', title: 'Slowest devices', empty: 'No finished commands.', onDevice }),
    pending: rankCard({ key: 'pending', title: 'Most pending', empty: 'Nothing pending.', onDevice }),
    failures: rankCard({ key: 'failures', title: 'Most failures', empty: 'No failures.', onDevice }),
  };

  const details = h('div', { class: 'monitor-details' }, hopCard, ranks.slowest.element, ranks.pending.element, ranks.failures.element);
  container.replaceChildren(chartRow, brokerPanel, details);

  // -------------------------------------------------------------------------------------------

  function terminalSum(data) {
    const states = data.commands_by_state;
    if (!isPlainObject(states)) return null;
    let sum = 0;
    for (const state of TERMINAL_STATES) {
      const n = states[state];
      if (isNum(n) && n >= 0) sum += n;
    }
    return sum;
  }

  /** Which shards answered: a change means the all-time counts jump for another reason. */
  function shardSignature(data) {
    if (!Array.isArray(data.shards)) return '';
    return data.shards
      .filter(isPlainObject)
      .map((s) => `${String(s.shard)}:${s.ok === false ? 0 : 1}`)
      .join(',');
  }

  function render(data, now) {
    // Throughput: terminal transitions since the previous poll, per second.
    const terminal = terminalSum(data);
    const shards = shardSignature(data);
    let rate = null;
    if (terminal !== null && baseline !== null && baseline.terminal !== null && baseline.shards === shards) {
      const seconds = (now - baseline.t) / 1000;
      const delta = terminal - baseline.terminal;
      // A decrease (store reset) or a long pause gives no honest rate: skip that sample.
      if (seconds > 0.2 && now - baseline.t <= gapMs && delta >= 0) rate = delta / seconds;
    }
    baseline = { t: now, terminal, shards };

    const latency = isPlainObject(data.latency_ms) ? data.latency_ms : {};
    const e2e = isPlainObject(latency.end_to_end) ? latency.end_to_end : {};
    const p50 = readBound(e2e.p50);
    const p99 = readBound(e2e.p99);
    const devices = isPlainObject(data.devices) ? data.devices : {};

    samples.push({
      t: now,
      rate,
      counted: terminal !== null,
      p50, // Infinity (beyond the last bucket) is shown as a value but not drawn
      p99,
      online: nonNegative(devices.online),
      total: nonNegative(devices.total),
      e2eCount: nonNegative(e2e.count),
      windowMinutes: nonNegative(data.window_minutes),
    });
    redraw(now);
    renderBroker(data.broker);
    renderHops(latency, data.window_minutes);
    renderRanks(data);
  }

  /** Redraw the charts for time `now`. The readings show the latest sample, even a stale one
   *  (the whole panel is dimmed then); the sparklines show the gap. */
  function redraw(now) {
    const from = now - CHART_WINDOW_MS;
    const all = samples.toArray();
    const shown = all.filter((s) => s.t >= from - gapMs);
    const inWindow = shown.filter((s) => s.t >= from);
    const last = all.length ? all[all.length - 1] : {};
    const maxOf = (keys) => {
      let max = 0;
      for (const s of inWindow) for (const key of keys) if (isNum(s[key])) max = Math.max(max, s[key]);
      return max;
    };
    const read = (key) => (last[key] === undefined ? null : last[key]);

    // Throughput.
    {
      const chart = charts.throughput;
      const max = niceMax(maxOf(['rate']), 1);
      chart.plot.draw(shown, { from, to: now, max, gapMs });
      chart.setMax(`${formatRate(max)}/s`);
      const value = read('rate');
      chart.setValue(formatRate(value), value);
      const rates = inWindow.filter((s) => isNum(s.rate)).map((s) => s.rate);
      const average = rates.length ? rates.reduce((a, b) => a + b, 0) / rates.length : null;
      let note = 'finished commands';
      if (last.counted === false) note = 'no command counts';
      else if (value === null && last.counted) note = 'measuring…';
      else if (average !== null) note = `avg ${formatRate(average)}/s · 10 min`;
      chart.setNote(note);
      chart.plot.setLabel(`Commands finished per second over the last 10 minutes; now ${formatRate(value)} per second.`);
    }

    // Latency, on a log scale: the bucket bounds are log-spaced and p99 is often 10-100× p50.
    {
      const chart = charts.latency;
      const max = niceMax(maxOf(['p50', 'p99']), 1);
      const bounds = inWindow.flatMap((s) => [s.p50, s.p99]);
      const min = Math.min(logFloor(bounds, 1), max / 10);
      chart.plot.draw(shown, { from, to: now, max, min, log: true, gapMs });
      chart.setMax(bounds.some(isNum) ? `${formatMs(min)}–${formatMs(max)} ms · log` : '');
      const p50 = read('p50');
      const p99 = read('p99');
      chart.setReading('p50', formatBound(p50), p50);
      chart.setReading('p99', formatBound(p99), p99);
      const count = read('e2eCount');
      const minutes = read('windowMinutes');
      const span = minutes ? `${formatCount(minutes)} min` : 'the window';
      chart.setNote(
        count === null
          ? 'upper bucket bounds'
          : count === 0
            ? `no commands in ${span}`
            : `${formatCount(count)} command${count === 1 ? '' : 's'} in ${span}`,
      );
      chart.plot.setLabel(`End-to-end latency over the last 10 minutes; now p50 ${formatBound(p50)}, p99 ${formatBound(p99)}.`);
    }

    // Online devices, with the fleet size as a reference line.
    {
      const chart = charts.online;
      const max = niceMax(maxOf(['online', 'total']), 1);
      chart.plot.draw(shown, { from, to: now, max, gapMs });
      chart.setMax(formatCount(max));
      const online = read('online');
      const total = read('total');
      chart.setValue(formatCount(online), online);
      chart.setNote(total === null ? 'devices' : `of ${formatCount(total)} device${total === 1 ? '' : 's'}`);
      chart.plot.setLabel(`Online devices over the last 10 minutes; now ${formatCount(online)} of ${formatCount(total)}.`);
    }
  }

  function renderBroker(broker) {
    if (!isPlainObject(broker)) {
      brokerPanel.hidden = true;
      return;
    }
    const figures = isPlainObject(broker.figures) ? broker.figures : {};
    const present = [];
    for (const field of BROKER_FIELDS) {
      let value = field.figure ? figures[field.key] : field.read(broker);
      if (field.figure) value = isNum(value) ? value : null;
      if (value === null || value === undefined) {
        brokerItems.get(field.key)?.item.remove();
        continue;
      }
      let entry = brokerItems.get(field.key);
      if (!entry) {
        const valueEl = h('dd', { dataset: { brokerField: field.key } });
        entry = { item: h('div', { class: 'broker-field' }, h('dt', { text: field.label }), valueEl), value: valueEl };
        brokerItems.set(field.key, entry);
      }
      setText(entry.value, field.format(value));
      const tone = field.tone ? field.tone(value) : null;
      if (tone) entry.item.dataset.tone = tone;
      else delete entry.item.dataset.tone;
      if (field.key === 'version') entry.value.title = value;
      present.push(entry.item);
    }
    // Re-order only when the set of fields changed.
    const children = brokerList.children;
    if (children.length !== present.length || present.some((item, i) => children[i] !== item)) {
      brokerList.replaceChildren(...present);
    }
    brokerPanel.dataset.connected = broker.connected === true ? 'yes' : broker.connected === false ? 'no' : 'unknown';
    brokerPanel.hidden = present.length === 0;
  }

  function renderHops(latency, windowMinutes) {
    const rows = HOPS.map((hop) => {
      const entry = isPlainObject(latency[hop.key]) ? latency[hop.key] : {};
      return { hop, count: nonNegative(entry.count), p50: readBound(entry.p50), p99: readBound(entry.p99) };
    });
    let max = 0;
    for (const row of rows) {
      for (const v of [row.p50, row.p99]) if (v !== null) max = Math.max(max, v === Infinity ? 0 : v);
    }
    const width = (v) => (v === null ? 0 : v === Infinity || max === 0 ? 100 : Math.max(1.5, (v / max) * 100));
    for (const row of rows) {
      const cells = hopRows[row.hop.key];
      setText(cells.count, formatCount(row.count));
      setText(cells.p50, formatBound(row.p50));
      setText(cells.p99, formatBound(row.p99));
      cells.bar50.style.width = `${width(row.p50)}%`;
      cells.bar99.style.width = `${width(row.p99)}%`;
    }
    setText(hopNote, isNum(windowMinutes) && windowMinutes > 0 ? `last ${formatCount(windowMinutes)} min` : '');
  }

  function renderRanks(data) {
    const span = formatWindow(data.failures_window_seconds) || 'recent';
    ranks.slowest.setNote(`mean · ${span}`);
    ranks.slowest.render(
      rows(data.slowest, 'mean_end_to_end_ms').map((r) => ({
        device: r.device,
        value: r.value,
        text: formatLatency(r.value),
        title: isNum(r.raw.commands)
          ? `${r.device}: mean ${formatLatency(r.value)} over ${formatCount(r.raw.commands)} succeeded command${r.raw.commands === 1 ? '' : 's'}`
          : r.device,
      })),
    );
    ranks.pending.setNote('commands waiting');
    ranks.pending.render(
      rows(data.top_pending, 'pending').map((r) => ({ device: r.device, value: r.value, text: formatCount(r.value), title: `${r.device}: ${formatCount(r.value)} pending` })),
    );
    ranks.failures.setNote(span);
    ranks.failures.render(
      rows(data.top_failures, 'failures').map((r) => ({
        device: r.device,
        value: r.value,
        text: formatCount(r.value),
        title: `${r.device}: ${formatCount(r.value)} failed, rejected, expired, undeliverable or timed out`,
      })),
    );
  }

  function rows(list, field) {
    if (!Array.isArray(list)) return [];
    const out = [];
    for (const raw of list.slice(0, 10)) {
      if (!isPlainObject(raw) || typeof raw.device !== 'string' || raw.device === '') continue;
      const value = raw[field];
      if (!isNum(value)) continue;
      out.push({ device: raw.device, value, raw });
    }
    return out;
  }

  return {
    render,
    redraw: (now) => redraw(now),
    resetBaseline() {
      baseline = null;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Building blocks.

/** One chart card: <figure data-chart=key> with a title, the current value and a sparkline. */
function chartCard({ key, title, hint = null, series, unit = '', legend = false, readings = null }) {
  const plot = new Sparkline({ series, label: title });
  const maxLabel = h('span', { class: 'chart-max', 'aria-hidden': 'true' });
  const note = h('span', { class: 'chart-note' });
  const head = h(
    'figcaption',
    { class: 'chart-head' },
    h('span', { class: 'chart-title', text: title, title: hint }),
    legend
      ? h(
          'span',
          { class: 'chart-legend', 'aria-hidden': 'true' },
          [...series].reverse().map((s) =>
            h('span', { class: 'legend-item' }, h('span', { class: `legend-swatch ${s.className}${s.reference ? ' is-reference' : ''}` }), s.label),
          ),
        )
      : null,
  );

  let valueEl;
  const readingEls = {};
  if (readings) {
    valueEl = h(
      'span',
      { class: 'chart-value chart-value-multi', dataset: { value: '' } },
      readings.map((r) => {
        readingEls[r.key] = h('span', { class: 'reading-number', dataset: { reading: r.key }, text: '—' });
        return h('span', { class: `reading reading-${r.key}` }, h('span', { class: 'reading-key', text: r.label }), ' ', readingEls[r.key]);
      }).flatMap((node, i) => (i ? [h('span', { class: 'reading-sep', 'aria-hidden': 'true', text: ' · ' }), node] : [node])),
    );
  } else {
    valueEl = h('span', { class: 'chart-value', dataset: { value: '' }, text: '—' });
  }

  const reading = h(
    'div',
    { class: 'chart-reading' },
    h('span', { class: 'chart-current' }, valueEl, unit ? h('span', { class: 'chart-unit', text: unit }) : null),
    note,
  );
  const element = h(
    'figure',
    { class: `chart chart-${key}`, dataset: { chart: key } },
    head,
    reading,
    h(
      'div',
      { class: 'chart-plot' },
      maxLabel,
      plot.element,
      h('div', { class: 'chart-axis', 'aria-hidden': 'true' }, h('span', { text: '−10 min' }), h('span', { text: 'now' })),
    ),
  );

  const setRaw = (el, raw) => {
    const value = raw === null || raw === undefined ? '' : String(raw);
    if (el.dataset.raw !== value) el.dataset.raw = value;
  };

  return {
    element,
    plot,
    setValue(display, raw) {
      setText(valueEl, display);
      setRaw(valueEl, raw);
    },
    setReading(name, display, raw) {
      setText(readingEls[name], display);
      setRaw(readingEls[name], raw);
    },
    setNote(value) {
      setText(note, value);
    },
    setMax(value) {
      setText(maxLabel, value);
    },
  };
}

/** A small ranked list of devices with a proportional bar behind each row. */
function rankCard({ key, title, empty, onDevice }) {
  const note = h('span', { class: 'monitor-note' });
  const listEl = h('ol', { class: 'rank-list', 'aria-label': title });
  const emptyEl = h('p', { class: 'rank-empty', text: empty, hidden: true });
  const element = h(
    'section',
    { class: 'monitor-card rank-card', dataset: { list: key }, 'aria-label': title },
    h('div', { class: 'monitor-card-head' }, h('h3', { text: title }), note),
    listEl,
    emptyEl,
  );
  let lastKey = null;

  return {
    element,
    setNote(value) {
      setText(note, value);
    },
    render(items) {
      const signature = JSON.stringify(items.map((i) => [i.device, i.text, i.title]));
      if (signature === lastKey) return; // unchanged: keep the nodes (and any focus) as they are
      lastKey = signature;
      const max = items.reduce((m, i) => Math.max(m, i.value), 0);
      const focusedDevice = listEl.contains(document.activeElement) ? document.activeElement.dataset?.device : undefined;
      let refocus = null;
      listEl.replaceChildren(
        ...items.map((item) => {
          const bar = h('span', { class: 'rank-bar', 'aria-hidden': 'true' });
          bar.style.width = `${max > 0 ? Math.max(2, (item.value / max) * 100) : 0}%`;
          const device = onDevice
            ? h('button', {
                type: 'button',
                class: 'rank-device device-id',
                text: item.device,
                title: `${item.title} · select in the console`,
                dataset: { device: item.device },
                onclick: () => onDevice(item.device),
              })
            : h('span', { class: 'rank-device device-id', text: item.device, title: item.title });
          if (focusedDevice !== undefined && focusedDevice === item.device) refocus = device;
          return h('li', { class: 'rank-item', dataset: { device: item.device } }, bar, device, h('span', { class: 'rank-value', text: item.text }));
        }),
      );
      refocus?.focus();
      emptyEl.hidden = items.length > 0;
    },
  };
}
