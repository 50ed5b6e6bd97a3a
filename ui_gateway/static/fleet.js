// The fleet monitoring panel (#fleet-panel): polls GET /api/fleet every 2 s and
// GET /api/fleet/history?range= every 10 s (and at once when the range changes), and shows
// - the figures: online, offline, total and pending;
// - three charts: finished commands per second and end-to-end latency p50/p99 per minute over the
//   chosen range (15 min, 1 h, 6 h; from the server's history, so they are whole even in a tab
//   opened a moment ago), and online devices against the fleet size over the last 10 minutes
//   (sampled live, in a bounded ring);
// - the broker strip (#broker-panel): connection, version and Mosquitto's $SYS figures;
// - the workers (#workers-panel, workers.js): each shard group's owner, its shards and lag;
// - the hop latency table (#hop-table) and the slowest / most pending / most failing devices.
// Fields it does not know are ignored and missing ones are skipped. Device ids are untrusted:
// they only ever reach the page as text.

import { h, setText, formatCount, formatClock, formatLatency, isPlainObject, session } from './dom.js';
import { Ring, Sparkline, niceMax, logFloor, formatRate, formatMs, formatBytes, formatDuration, formatWindow } from './charts.js';
import { createWorkersPanel } from './workers.js';

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
  { key: 'waiting_for_device', label: 'Waiting for the device', hint: 'queued → delivered: time the device was offline or busy' },
  { key: 'delivered_to_final', label: 'Device time', hint: 'delivered → final: how long the device took' },
  { key: 'end_to_end', label: 'End to end' },
];

/** The history ranges the server offers (GET /api/fleet/history?range=). */
const RANGES = [
  { key: '15m', label: '15 min', axis: '−15 min', words: '15 min' },
  { key: '1h', label: '1 h', axis: '−1 h', words: 'hour' },
  { key: '6h', label: '6 h', axis: '−6 h', words: '6 hours' },
];
const RANGE_KEY = 'tether.range';
const HISTORY_REFRESH_MS = 10_000;

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

/** A latency the server estimated (a value, not a bucket bound). */
function formatValue(value) {
  if (value === Infinity) return `${formatMs(value)} ms`;
  return value === null ? '—' : formatLatency(value);
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
  let historyAt = -Infinity; // when the history was last fetched
  const monitor = createMonitor(extras, {
    interval,
    onDevice,
    onRange: () => {
      historyAt = -Infinity;
      if (running && controller === null) {
        clearTimeout(timer);
        timer = null;
        refresh();
      }
    },
  });

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
      const wantHistory = Date.now() - historyAt >= HISTORY_REFRESH_MS;
      const range = monitor.range();
      const [data, history] = await Promise.all([
        api.get('/api/fleet', { signal: abort.signal }),
        wantHistory
          ? api.get(`/api/fleet/history?range=${encodeURIComponent(range)}`, { signal: abort.signal }).catch((err) => {
              if (err && err.name === 'AbortError') throw err;
              return null; // an older server without history: the charts fall back to live samples
            })
          : null,
      ]);
      if (mine !== generation) return;
      // A reply for a range the user has left is dropped (historyAt stays due: the next poll
      // fetches the new range).
      if (wantHistory && range === monitor.range()) {
        historyAt = Date.now();
        monitor.setHistory(isPlainObject(history) && Array.isArray(history.points) ? history : null);
      }
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

function createMonitor(container, { interval, onDevice, onRange }) {
  const samples = new Ring(SAMPLE_CAPACITY);
  let range = RANGES.some((r) => r.key === session.get(RANGE_KEY)) ? session.get(RANGE_KEY) : RANGES[0].key;
  let history = null; // the latest GET /api/fleet/history reply for `range`
  let lastData = {};
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
      hint: 'End-to-end latency percentiles per minute (interpolated from fine histograms), in ms',
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

  const rangeButtons = RANGES.map((r) =>
    h('button', {
      type: 'button',
      class: 'btn btn-small range-button',
      text: r.label,
      dataset: { range: r.key },
      'aria-pressed': String(r.key === range),
      onclick: () => setRange(r.key),
    }),
  );
  const rangeBar = h(
    'div',
    { class: 'chart-ranges', role: 'group', 'aria-label': 'Time range of the charts' },
    h('span', { class: 'chart-ranges-label', text: 'Range' }),
    rangeButtons,
  );
  const chartRow = h('div', { class: 'monitor-charts' }, Object.values(charts).map((c) => c.element));

  function setRange(key) {
    if (key === range) return;
    range = key;
    session.set(RANGE_KEY, key);
    for (const button of rangeButtons) button.setAttribute('aria-pressed', String(button.dataset.range === key));
    history = null;
    redraw(Date.now());
    onRange?.();
  }

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
      h('th', { scope: 'row', text: hop.label, title: hop.hint ?? null }),
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
      h('caption', { class: 'sr-only', text: 'Latency of each hop: number of commands, p50 and p99 in milliseconds' }),
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
    waits: rankCard({ key: 'waits', title: 'Longest waits', empty: 'No delivered commands.', onDevice }),
    pending: rankCard({ key: 'pending', title: 'Most pending', empty: 'Nothing pending.', onDevice }),
    failures: rankCard({ key: 'failures', title: 'Most failures', empty: 'No failures.', onDevice }),
  };

  const details = h(
    'div',
    { class: 'monitor-details' },
    hopCard,
    ranks.slowest.element,
    ranks.waits.element,
    ranks.pending.element,
    ranks.failures.element,
  );
  // Bridge workers: the owner of each shard group.
  const workers = createWorkersPanel();

  container.replaceChildren(rangeBar, chartRow, brokerPanel, workers.element, details);

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
    lastData = data;
    redraw(now);
    renderBroker(data.broker);
    workers.render(data.workers);
    renderHops();
    renderRanks(data);
  }

  /** The history as chart samples: one per finished minute at its middle, and the current
   *  (partial) minute at `now`, its rate over the seconds elapsed (at least 15 s: no spikes). */
  function historySamples(now) {
    const out = [];
    for (const p of history.points) {
      if (!isPlainObject(p) || !isNum(p.t)) continue;
      const start = p.t * 1000;
      const partial = start + 60_000 > now;
      const seconds = partial ? Math.max(15, (now - start) / 1000) : 60;
      out.push({
        t: partial ? now : start + 30_000,
        rate: isNum(p.finished) ? p.finished / seconds : null,
        p50: readBound(p.p50_ms),
        p99: readBound(p.p99_ms),
      });
    }
    return out;
  }

  /** Commands finished per second over the last 60 s, from the two newest minutes. */
  function lastMinuteRate(now) {
    const points = history.points.filter((p) => isPlainObject(p) && isNum(p.t) && isNum(p.finished));
    const current = points[points.length - 1];
    if (!current) return null;
    const previous = points[points.length - 2];
    const into = Math.min(1, Math.max(0, (now - current.t * 1000) / 60_000));
    return (current.finished + (previous ? previous.finished * (1 - into) : 0)) / 60;
  }

  /** Redraw the charts for time `now`. The readings show the latest sample, even a stale one
   *  (the whole panel is dimmed then); the sparklines show the gap. */
  function redraw(now) {
    if (history) redrawHistory(now);
    else redrawLive(now);
    redrawOnline(now);
  }

  function redrawHistory(now) {
    const spec = RANGES.find((r) => r.key === range) ?? RANGES[0];
    const from = isNum(history.from) ? history.from * 1000 : now - (history.range_seconds ?? 900) * 1000;
    const gap = 150_000; // minutes are contiguous: only a missing point breaks the line
    const points = historySamples(now);
    const maxOf = (keys) => {
      let max = 0;
      for (const s of points) for (const key of keys) if (isNum(s[key]) && s[key] !== Infinity) max = Math.max(max, s[key]);
      return max;
    };
    {
      const chart = charts.throughput;
      const max = niceMax(maxOf(['rate']), 1);
      chart.plot.draw(points, { from, to: now, max, gapMs: gap });
      chart.setMax(`${formatRate(max)}/s`);
      chart.setAxis(spec.axis);
      const value = lastMinuteRate(now);
      chart.setValue(formatRate(value), value);
      const total = history.points.reduce((sum, p) => sum + (isNum(p?.finished) ? p.finished : 0), 0);
      chart.setNote(`last 60 s · ${formatCount(total)} in ${spec.words}`);
      chart.plot.setLabel(`Commands finished per second, per minute over the last ${spec.words}; last minute ${formatRate(value)} per second.`);
    }
    {
      const chart = charts.latency;
      const max = niceMax(maxOf(['p50', 'p99']), 1);
      const values = points.flatMap((s) => [s.p50, s.p99]);
      const min = Math.min(logFloor(values, 1), max / 10);
      chart.plot.draw(points, { from, to: now, max, min, log: true, gapMs: gap });
      chart.setMax(values.some(isNum) ? `${formatMs(min)}–${formatMs(max)} ms · log` : '');
      chart.setAxis(spec.axis);
      const e2e = isPlainObject(history.latency_ms?.end_to_end) ? history.latency_ms.end_to_end : {};
      const p50 = readBound(e2e.p50);
      const p99 = readBound(e2e.p99);
      chart.setReading('p50', formatValue(p50), p50);
      chart.setReading('p99', formatValue(p99), p99);
      const count = nonNegative(e2e.count);
      chart.setNote(
        count === null ? '' : count === 0 ? `no commands in ${spec.words}` : `${formatCount(count)} command${count === 1 ? '' : 's'} in ${spec.words}`,
      );
      chart.plot.setLabel(`End-to-end latency per minute over the last ${spec.words}; p50 ${formatValue(p50)}, p99 ${formatValue(p99)}.`);
    }
  }

  /** The samples this tab took over the last 10 minutes, and readers of them. */
  function liveWindow(now) {
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
    return { from, shown, inWindow, last, maxOf, read };
  }

  function redrawLive(now) {
    const { from, shown, inWindow, last, maxOf, read } = liveWindow(now);

    // Throughput.
    {
      const chart = charts.throughput;
      const max = niceMax(maxOf(['rate']), 1);
      chart.plot.draw(shown, { from, to: now, max, gapMs });
      chart.setAxis('−10 min');
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
      chart.setAxis('−10 min');
      chart.setMax(bounds.some(isNum) ? `${formatMs(min)}–${formatMs(max)} ms · log` : '');
      const p50 = read('p50');
      const p99 = read('p99');
      chart.setReading('p50', formatValue(p50), p50);
      chart.setReading('p99', formatValue(p99), p99);
      const count = read('e2eCount');
      const minutes = read('windowMinutes');
      const span = minutes ? `${formatCount(minutes)} min` : 'the window';
      chart.setNote(
        count === null
          ? ''
          : count === 0
            ? `no commands in ${span}`
            : `${formatCount(count)} command${count === 1 ? '' : 's'} in ${span}`,
      );
      chart.plot.setLabel(`End-to-end latency over the last 10 minutes; now p50 ${formatValue(p50)}, p99 ${formatValue(p99)}.`);
    }
  }

  function redrawOnline(now) {
    const { from, shown, inWindow, last, maxOf, read } = liveWindow(now);
    // Online devices, with the fleet size as a reference line (sampled live by this tab).
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

  /** The hop table: over the chosen range from the history, else the server's live window. */
  function renderHops() {
    const spec = RANGES.find((r) => r.key === range) ?? RANGES[0];
    const fromHistory = history !== null && isPlainObject(history.latency_ms);
    const latency = fromHistory ? history.latency_ms : isPlainObject(lastData.latency_ms) ? lastData.latency_ms : {};
    const windowMinutes = lastData.window_minutes;
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
      setText(cells.p50, formatValue(row.p50));
      setText(cells.p99, formatValue(row.p99));
      cells.bar50.style.width = `${width(row.p50)}%`;
      cells.bar99.style.width = `${width(row.p99)}%`;
    }
    if (fromHistory) setText(hopNote, `last ${spec.words} · commands finished`);
    else setText(hopNote, isNum(windowMinutes) && windowMinutes > 0 ? `last ${formatCount(windowMinutes)} min` : '');
  }

  function renderRanks(data) {
    const span = formatWindow(data.failures_window_seconds) || 'recent';
    // Slow devices (delivered → final) apart from commands waiting for a device to come online
    // or take them (queued → delivered): a device that was offline is not a slow device.
    const byDevice = !(Array.isArray(data.slowest) && data.slowest.some((r) => isPlainObject(r) && !isNum(r.mean_device_ms)));
    ranks.slowest.setNote(`${byDevice ? 'device time' : 'end to end'} · ${span}`);
    ranks.slowest.render(
      rows(data.slowest, byDevice ? 'mean_device_ms' : 'mean_end_to_end_ms').map((r) => ({
        device: r.device,
        value: r.value,
        text: formatLatency(r.value),
        title: isNum(r.raw.commands)
          ? `${r.device}: mean ${formatLatency(r.value)} ${byDevice ? 'from delivery to the final ack ' : ''}over ${formatCount(r.raw.commands)} succeeded command${r.raw.commands === 1 ? '' : 's'}`
          : r.device,
      })),
    );
    ranks.waits.setNote(`queued → delivered · ${span}`);
    ranks.waits.render(
      rows(data.longest_waits, 'mean_wait_ms').map((r) => ({
        device: r.device,
        value: r.value,
        text: formatLatency(r.value),
        title: `${r.device}: commands waited ${formatLatency(r.value)} on average for the device to take them`,
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
    range: () => range,
    setHistory(data) {
      history = data;
      redraw(Date.now());
      renderHops();
    },
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
  const axisStart = h('span', { class: 'chart-axis-start', text: '−10 min' });
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
      h('div', { class: 'chart-axis', 'aria-hidden': 'true' }, axisStart, h('span', { text: 'now' })),
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
    setAxis(value) {
      setText(axisStart, value);
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
