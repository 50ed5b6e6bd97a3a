// The Workers region of the fleet panel (#workers-panel): which bridge worker owns each shard
// group of the store, from the `workers` list of GET /api/fleet (polled by fleet.js).
//
// A group's owner holds its lease and publishes a retained status every few seconds; a gateway
// reports, per group, either that status (worker name, host, pid, shards, since, how old the
// status is, how many events its live feed is behind each shard) or `owner: null`. A group
// without a live owner (none, or a silent one: `stale`) is shown as "no owner — taking over":
// its devices' commands wait until another worker (a standby, or the supervisor's restart)
// takes the lease. When a group's owner changes, the region says from whom it was taken over,
// and a polite live region announces it.
//
// Worker names and hosts are server data: they only ever reach the page as text.

import { h, setText, formatCount, formatClock, formatFull, formatSince, isPlainObject, parseTime } from './dom.js';

const isNum = (value) => typeof value === 'number' && Number.isFinite(value);
const text = (value) => (typeof value === 'string' && value.trim() !== '' ? value.trim() : null);

/** Events behind at or above this are flagged: a few are just events in flight between polls. */
const LAG_WARN = 100;

/** One group as the region shows it, from one entry of `workers` (null when unusable). */
export function readGroup(raw) {
  if (!isPlainObject(raw) || !Number.isInteger(raw.group) || raw.group < 0) return null;
  const owner = text(raw.owner) ?? text(raw.worker);
  const shards = Array.isArray(raw.shards) ? raw.shards.filter((s) => Number.isInteger(s) && s >= 0) : [];
  // Per shard: events the owner committed that this gateway's live feed has not seen yet (null:
  // no live feed). A shard the owner has committed nothing to since it took the group is absent:
  // nothing to be behind on. Without the field at all, the lag is unknown.
  const reported = isPlainObject(raw.events_behind);
  const behind = reported ? raw.events_behind : {};
  const lag = Object.entries(behind)
    .map(([shard, n]) => ({ shard, n: isNum(n) && n >= 0 ? n : null }))
    .sort((a, b) => Number(a.shard) - Number(b.shard));
  const known = lag.filter((l) => l.n !== null);
  const state = raw.owner === null || owner === null ? 'unowned' : raw.stale === true ? 'stale' : 'owned';
  return {
    group: raw.group,
    state,
    owner,
    host: text(raw.host),
    pid: Number.isInteger(raw.pid) ? raw.pid : null,
    shards,
    since: parseTime(raw.since),
    age: isNum(raw.status_age_seconds) && raw.status_age_seconds >= 0 ? raw.status_age_seconds : null,
    lag,
    behind: reported && (known.length || !lag.length) ? known.reduce((sum, l) => sum + l.n, 0) : null,
  };
}

/**
 * @param {{now?: () => number}} [options]
 * @returns {{element: HTMLElement, render: (workers: unknown) => void}}
 */
export function createWorkersPanel({ now = () => Date.now() } = {}) {
  const note = h('span', { class: 'monitor-note workers-note', dataset: { field: 'summary' } });
  const list = h('ul', { id: 'worker-list', class: 'worker-list', 'aria-labelledby': 'workers-title' });
  const announcer = h('span', { class: 'sr-only', role: 'status', 'aria-live': 'polite' });
  const element = h(
    'section',
    { id: 'workers-panel', class: 'monitor-card workers-card', 'aria-labelledby': 'workers-title', hidden: true },
    h('div', { class: 'monitor-card-head' }, h('h3', { id: 'workers-title', text: 'Workers' }), note),
    list,
    announcer,
  );
  const items = new Map(); // group → the item's nodes
  const lastOwner = new Map(); // group → the last live owner this tab saw
  const handovers = new Map(); // group → {from, at}: the latest takeover this tab saw
  let rendered = false;

  function item(group) {
    let entry = items.get(group);
    if (entry) return entry;
    const fact = (key, label) => {
      const value = h('dd', { dataset: { field: key } });
      const row = h('div', { class: 'worker-fact', dataset: { fact: key } }, h('dt', { text: label }), value);
      return { row, value };
    };
    const facts = {
      host: fact('host', 'Host'),
      shards: fact('shards', 'Shards'),
      since: fact('since', 'Owner since'),
      age: fact('age', 'Status'),
      lag: fact('lag', 'Behind'),
    };
    const title = h('h4', { class: 'worker-group-title', text: `Group ${group}` });
    const owner = h('span', { class: 'worker-owner', dataset: { field: 'owner' } });
    const handover = h('p', { class: 'worker-handover', dataset: { field: 'handover' }, hidden: true });
    const dl = h('dl', { class: 'worker-facts' }, Object.values(facts).map((f) => f.row));
    const li = h(
      'li',
      { class: 'worker-group', dataset: { group } },
      h('div', { class: 'worker-group-head' }, title, owner),
      dl,
      handover,
    );
    entry = { li, owner, facts, dl, handover };
    items.set(group, entry);
    return entry;
  }

  function fill(entry, g, at) {
    const { li, owner, facts, dl, handover } = entry;
    li.dataset.state = g.state;
    if (g.owner && g.state !== 'unowned') li.dataset.owner = g.owner;
    else delete li.dataset.owner;
    if (g.state === 'unowned') setText(owner, 'No owner — taking over');
    else if (g.state === 'stale') setText(owner, `${g.owner}: silent — taking over`);
    else setText(owner, g.owner);
    owner.title =
      g.state === 'unowned'
        ? 'No worker holds this group’s lease: commands to its devices wait until one takes it over'
        : g.state === 'stale'
          ? `${g.owner} has not reported for ${formatSince(at - (g.age ?? 0) * 1000, at)}: another worker takes over once its lease is free`
          : `${g.owner} holds this group’s lease`;
    dl.hidden = g.state === 'unowned';
    if (g.state !== 'unowned') {
      setText(facts.host.value, [g.host, g.pid === null ? null : `pid ${g.pid}`].filter(Boolean).join(' · ') || '—');
      setText(facts.shards.value, g.shards.length ? g.shards.join(', ') : '—');
      facts.shards.value.title = g.shards.length ? `store shard${g.shards.length === 1 ? '' : 's'} ${g.shards.join(', ')}` : '';
      setText(facts.since.value, Number.isFinite(g.since) ? `${formatClock(g.since, { millis: false })} (${formatSince(g.since, at)})` : '—');
      facts.since.value.title = Number.isFinite(g.since) ? formatFull(g.since) : '';
      setText(facts.age.value, g.age === null ? '—' : `${g.age.toFixed(1)} s old`);
      if (g.state === 'stale') facts.age.row.dataset.tone = 'warn';
      else delete facts.age.row.dataset.tone;
      setText(facts.lag.value, g.behind === null ? '—' : `${formatCount(g.behind)} event${g.behind === 1 ? '' : 's'}`);
      facts.lag.value.title = g.lag.length
        ? g.lag.map((l) => `shard ${l.shard}: ${l.n === null ? 'unknown' : formatCount(l.n)}`).join(' · ')
        : '';
      facts.lag.value.dataset.raw = g.behind === null ? '' : String(g.behind);
      if (g.behind !== null && g.behind >= LAG_WARN) facts.lag.row.dataset.tone = 'warn';
      else delete facts.lag.row.dataset.tone;
    }
    const moved = handovers.get(g.group);
    handover.hidden = !moved;
    if (moved) {
      setText(handover, `Taken over from ${moved.from} at ${formatClock(moved.at, { millis: false })}`);
      handover.dataset.from = moved.from;
    }
  }

  function render(workers) {
    if (!Array.isArray(workers) || workers.length === 0) {
      element.hidden = true; // a server without separate workers (or an older one)
      return;
    }
    const at = now();
    const groups = workers.map(readGroup).filter(Boolean).sort((a, b) => a.group - b.group);
    const said = [];
    for (const g of groups) {
      const live = g.state === 'owned' ? g.owner : null;
      const before = lastOwner.get(g.group);
      if (live !== null && before !== undefined && before !== live) {
        // When the new owner took the group (its own clock), else when this tab saw it.
        handovers.set(g.group, { from: before, at: Number.isFinite(g.since) ? g.since : at });
        said.push(`Group ${g.group} taken over by ${live} from ${before}.`);
      } else if (live === null && rendered && items.get(g.group)?.li.dataset.state === 'owned') {
        said.push(`Group ${g.group}: no owner, taking over.`);
      }
      if (live !== null) lastOwner.set(g.group, live);
      fill(item(g.group), g, at);
    }
    const shown = groups.map((g) => items.get(g.group).li);
    const children = list.children;
    if (children.length !== shown.length || shown.some((li, i) => children[i] !== li)) list.replaceChildren(...shown);

    const unowned = groups.filter((g) => g.state !== 'owned').length;
    const owners = new Set(groups.filter((g) => g.state === 'owned').map((g) => g.owner));
    const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;
    setText(
      note,
      unowned
        ? `${plural(unowned, 'group')} without an owner · ${plural(owners.size, 'worker')}`
        : `${plural(groups.length, 'group')} · ${plural(owners.size, 'worker')}`,
    );
    element.dataset.state = unowned ? 'degraded' : 'ok';
    element.hidden = false;
    if (said.length) setText(announcer, said.join(' '));
    rendered = true;
  }

  return { element, render };
}
