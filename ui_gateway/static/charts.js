// Small live charts for the fleet panel: a bounded ring of samples, an inline-SVG sparkline and
// the number formats the panel uses. No library, no canvas; SVG is built with createElementNS
// (never innerHTML), so nothing from the server is ever parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Create an SVG element with attributes (null/undefined values are skipped). */
export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(key, String(value));
  }
  return el;
}

/** A fixed-capacity ring buffer: pushing past `capacity` overwrites the oldest item. */
export class Ring {
  constructor(capacity) {
    this.capacity = Math.max(1, Math.floor(capacity));
    this.items = new Array(this.capacity);
    this.start = 0;
    this.length = 0;
  }

  push(item) {
    const index = (this.start + this.length) % this.capacity;
    this.items[index] = item;
    if (this.length < this.capacity) this.length += 1;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** The newest item, or undefined when empty. */
  last() {
    return this.length ? this.items[(this.start + this.length - 1) % this.capacity] : undefined;
  }

  /** Items oldest first. */
  toArray() {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i += 1) out[i] = this.items[(this.start + i) % this.capacity];
    return out;
  }

  clear() {
    this.items = new Array(this.capacity);
    this.start = 0;
    this.length = 0;
  }
}

/** The power of ten at or below the smallest positive value (the floor of a log axis). */
export function logFloor(values, fallback = 1) {
  let least = Infinity;
  for (const v of values) if (Number.isFinite(v) && v > 0 && v < least) least = v;
  return least === Infinity ? fallback : 10 ** Math.floor(Math.log10(least));
}

/** A "nice" axis maximum ≥ value: 1, 2, 2.5, 5 × 10^k. */
export function niceMax(value, floor = 1) {
  const v = Number.isFinite(value) && value > floor ? value : floor;
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= v - 1e-9) return step * magnitude;
  }
  return 10 * magnitude;
}

const num = (value) => typeof value === 'number' && Number.isFinite(value);

/**
 * An inline-SVG sparkline with one or more series over a sliding time window.
 *
 * The SVG stretches to its box (preserveAspectRatio="none") and strokes keep their width
 * (vector-effect="non-scaling-stroke"). Every data path has the class `spark`. A series can be
 * drawn with a filled area under it (`area: true`) or as a faint dashed reference (`reference`).
 * Gaps (missing values, or samples further apart than `gapMs`) break the line.
 */
export class Sparkline {
  /**
   * @param {{series: {key: string, label: string, className: string, area?: boolean, reference?: boolean}[],
   *          label: string, width?: number, height?: number}} options
   */
  constructor({ series, label, width = 300, height = 60 }) {
    this.series = series;
    this.width = width;
    this.height = height;
    this.element = svg('svg', {
      class: 'sparkline',
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': label,
      focusable: 'false',
    });
    const grid = svg('g', { class: 'spark-grid', 'aria-hidden': 'true' });
    for (const y of [0.5, height / 2]) {
      grid.append(svg('line', { x1: 0, x2: width, y1: y, y2: y, 'vector-effect': 'non-scaling-stroke' }));
    }
    grid.append(
      svg('line', { class: 'spark-base', x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, 'vector-effect': 'non-scaling-stroke' }),
    );
    this.element.append(grid);
    this.paths = {};
    this.areas = {};
    for (const s of series) {
      if (s.area) {
        this.areas[s.key] = svg('path', { class: `spark spark-area ${s.className}`, d: '', 'aria-hidden': 'true' });
        this.element.append(this.areas[s.key]);
      }
    }
    for (const s of series) {
      this.paths[s.key] = svg('path', {
        class: `spark spark-line ${s.className}${s.reference ? ' spark-reference' : ''}`,
        d: '',
        fill: 'none',
        'vector-effect': 'non-scaling-stroke',
        'stroke-linejoin': 'round',
        'stroke-linecap': 'round',
      });
      this.element.append(this.paths[s.key]);
    }
  }

  /**
   * @param {{t: number}[]} samples oldest first; each holds a value per series key (number or null)
   * @param {{from: number, to: number, max: number, min?: number, log?: boolean, gapMs: number}} scale
   *   linear from 0 to `max`, or logarithmic from `min` to `max` (values below `min` sit on the base)
   */
  draw(samples, { from, to, max, min = 0, log = false, gapMs }) {
    const { width, height } = this;
    const span = Math.max(1, to - from);
    const top = Math.max(max, 1e-9);
    const x = (t) => ((t - from) / span) * width;
    const bottom = log ? Math.min(Math.max(min, 1e-9), top / 10) : 0;
    const fraction = log
      ? (v) => Math.log(Math.min(Math.max(v, bottom), top) / bottom) / Math.log(top / bottom)
      : (v) => Math.min(Math.max(v, 0), top) / top;
    // Keep a 1-unit margin so a line at 0 or at the maximum is not cut in half by the box.
    const y = (v) => height - 1 - fraction(v) * (height - 2);
    for (const s of this.series) {
      const segments = [];
      let current = null;
      let previousT = -Infinity;
      for (const sample of samples) {
        if (sample.t < from - gapMs) {
          previousT = sample.t;
          continue;
        }
        const value = sample[s.key];
        if (!num(value) || sample.t - previousT > gapMs) current = null;
        previousT = sample.t;
        if (!num(value)) continue;
        if (current === null) {
          current = [];
          segments.push(current);
        }
        current.push([x(sample.t), y(value)]);
      }
      const f = (n) => (Math.round(n * 10) / 10).toString();
      let line = '';
      let area = '';
      for (const points of segments) {
        // A lone point is drawn as a short flat tick so it stays visible.
        const pts = points.length === 1 ? [[points[0][0] - 1.5, points[0][1]], [points[0][0] + 1.5, points[0][1]]] : points;
        line += pts.map(([px, py], i) => `${i ? 'L' : 'M'}${f(px)} ${f(py)}`).join('');
        if (s.area) {
          area += `M${f(pts[0][0])} ${height}${pts.map(([px, py]) => `L${f(px)} ${f(py)}`).join('')}L${f(pts[pts.length - 1][0])} ${height}Z`;
        }
      }
      const path = this.paths[s.key];
      if (path.getAttribute('d') !== line) path.setAttribute('d', line);
      if (s.area) {
        const fill = this.areas[s.key];
        if (fill.getAttribute('d') !== area) fill.setAttribute('d', area);
      }
    }
  }

  setLabel(label) {
    if (this.element.getAttribute('aria-label') !== label) this.element.setAttribute('aria-label', label);
  }
}

// ---------------------------------------------------------------------------------------------
// Number formats

const en = (value, digits = 0) =>
  value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** A per-second or per-minute rate: "0", "0.05", "3.4", "1,234". */
export function formatRate(value) {
  if (!num(value)) return '—';
  const v = Math.max(0, value);
  if (v === 0) return '0';
  if (v < 0.1) return en(v, 2);
  if (v < 10) return en(v, 1);
  return en(Math.round(v));
}

/** A latency bucket bound in ms, without trailing zeros: "0.5", "2", "20", "2,000". */
export function formatMs(value) {
  if (value === Infinity) return '> 600,000';
  if (!num(value)) return '—';
  const v = Math.max(0, value);
  if (v < 1) return String(Number(v.toFixed(2)));
  if (v < 10) return String(Number(v.toFixed(1)));
  return en(Math.round(v));
}

/** Bytes in binary units: "512 B", "3.4 KiB", "12 MiB". */
export function formatBytes(value) {
  if (!num(value)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.max(0, value);
  let unit = 0;
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${Math.round(v)} B`;
  return `${v < 10 ? en(v, 1) : en(Math.round(v))} ${units[unit]}`;
}

/** A duration in seconds, two units at most: "45 s", "12 min", "5 h 12 min", "3 d 4 h". */
export function formatDuration(seconds) {
  if (!num(seconds)) return '—';
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return m % 60 ? `${hours} h ${m % 60} min` : `${hours} h`;
  const d = Math.floor(hours / 24);
  return hours % 24 ? `${d} d ${hours % 24} h` : `${d} d`;
}

/** A window length in seconds as words: "last hour", "last 30 min", "last 2 h". */
export function formatWindow(seconds) {
  if (!num(seconds) || seconds <= 0) return '';
  if (seconds === 3600) return 'last hour';
  if (seconds % 3600 === 0) return `last ${seconds / 3600} h`;
  if (seconds % 60 === 0) return `last ${seconds / 60} min`;
  return `last ${Math.round(seconds)} s`;
}
