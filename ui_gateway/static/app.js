// Tether dashboard: wires the token, the live WebSocket, the fleet table, the command console,
// the event stream and the fleet figures together. No framework, no build step.

import { byId, h, session, newRef, setText, isPlainObject } from './dom.js';
import { createApi, devicePath, commandPath } from './api.js';
import { LiveSocket } from './socket.js';
import { FleetTable } from './devices.js';
import { CommandList, isCommandRecord } from './commands.js';
import { EventLog } from './eventlog.js';
import { createFleetPanel } from './fleet.js';
import { DevicePage } from './devicepage.js';
import { formatDuration } from './charts.js';

const KEYS = { token: 'tether.token', cursor: 'tether.cursor', device: 'tether.device' };
const REPLY_TIMEOUT_MS = 15_000; // a send/cancel without reply is reported, not retried
const DEVICE_REFRESH_MS = 1_000; // at most one GET /api/devices/{id} per device per second
const DEVICE_REFRESH_CONCURRENCY = 4;
const ARGS_MAX_BYTES = 64 * 1024; // the contract's limit on encoded args
const NOTICE_MS = 10_000;

const els = {
  connState: byId('connection-state'),
  connText: byId('connection-text'),
  connRetry: byId('connection-retry'),
  connAnnouncer: byId('connection-announcer'),
  tokenChange: byId('token-change'),
  tokenPanel: byId('token-panel'),
  tokenForm: byId('token-form'),
  tokenInput: byId('token-input'),
  tokenMessage: byId('token-message'),
  tokenCancel: byId('token-cancel'),
  shardWarning: byId('shard-warning'),
  notice: byId('notice'),
  noticeText: byId('notice-text'),
  noticeClose: byId('notice-close'),
  fleetPanel: byId('fleet-panel'),
  fleetBody: byId('fleet-body'),
  fleetFilter: byId('fleet-filter'),
  fleetCount: byId('fleet-count'),
  fleetEmpty: byId('fleet-empty'),
  form: byId('console-form'),
  picker: byId('console-device'),
  name: byId('console-name'),
  args: byId('console-args'),
  ttl: byId('console-ttl'),
  send: byId('console-send'),
  consoleError: byId('console-error'),
  consoleStatus: byId('console-status'),
  commandList: byId('command-list'),
  commandsEmpty: byId('commands-empty'),
  commandsDevice: byId('commands-device'),
  eventLog: byId('event-log'),
  eventCount: byId('event-count'),
  eventClear: byId('event-log-clear'),
  devicePage: byId('device-page'),
};

// ---------------------------------------------------------------------------------------------
// Token: from the URL fragment (#token=…, then removed from the address bar), else from
// sessionStorage, else the token form.

function tokenFromFragment() {
  const fragment = location.hash.replace(/^#/, '');
  if (!fragment) return null;
  const parts = fragment.split('&');
  const index = parts.findIndex((part) => part.startsWith('token='));
  if (index < 0) return null;
  let value = parts[index].slice('token='.length);
  try {
    value = decodeURIComponent(value); // not URLSearchParams: it would turn "+" into a space
  } catch {
    /* keep it as written */
  }
  parts.splice(index, 1);
  const rest = parts.join('&');
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  return value || null;
}

let token = tokenFromFragment();
if (token) session.set(KEYS.token, token);
else token = session.get(KEYS.token);
let awaitingToken = false;
let live = false; // REST loads and the socket run only between startLive() and stopLive()

let cursor = session.get(KEYS.cursor);
let selected = null;

const api = createApi({
  getToken: () => token,
  onUnauthorized: () => showTokenForm('The server did not accept this token (401). Enter a valid token.'),
});

// ---------------------------------------------------------------------------------------------
// Connection state in the header.

let lastAnnounced = '';
let countdownTimer = null;
let connectionStatus = { state: 'connecting' };

function renderConnection(status = connectionStatus) {
  connectionStatus = status;
  const { state } = status;
  document.body.dataset.connection = state;
  els.connState.dataset.state = state;
  let text = state;
  if (state === 'reconnecting') {
    const seconds = Math.max(1, Math.ceil((status.retryAt - Date.now()) / 1000));
    text = `reconnecting in ${seconds}s`;
  } else if (state === 'connecting' && awaitingToken) text = 'waiting for token';
  setText(els.connText, text);
  els.connRetry.hidden = state !== 'reconnecting';

  // Screen readers hear state changes, not every tick of the countdown.
  const announcement = state === 'reconnecting' ? 'connection lost, reconnecting' : text;
  if (announcement !== lastAnnounced) {
    lastAnnounced = announcement;
    els.connAnnouncer.textContent = `Live connection: ${announcement}`;
  }

  if (state === 'reconnecting' && countdownTimer === null) {
    countdownTimer = setInterval(() => renderConnection(), 250);
  } else if (state !== 'reconnecting' && countdownTimer !== null) {
    clearInterval(countdownTimer);
    countdownTimer = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Views.

const fleet = new FleetTable({
  tbody: els.fleetBody,
  picker: els.picker,
  filter: els.fleetFilter,
  count: els.fleetCount,
  empty: els.fleetEmpty,
  onSelect: (id) => selectDevice(id),
  onOpen: (id) => openDevicePage(id),
});

const commandList = new CommandList({
  list: els.commandList,
  empty: els.commandsEmpty,
  title: els.commandsDevice,
  onCancel: (record) => cancelCommand(record),
});

const eventLog = new EventLog({
  list: els.eventLog,
  count: els.eventCount,
  onDevice: (id) => {
    if (fleet.has(id)) selectDevice(id);
  },
});

const fleetPanel = createFleetPanel(els.fleetPanel, {
  api,
  onDevice: (id) => {
    if (fleet.has(id)) selectDevice(id);
  },
});

const devicePage = new DevicePage({
  root: els.devicePage,
  api,
  onCancel: (record) => cancelCommand(record),
  onClose: () => closeDevicePage(),
});

/** The device named by #device=<id> in the address, or null. */
function deviceFromFragment() {
  const part = location.hash.replace(/^#/, '').split('&').find((p) => p.startsWith('device='));
  if (!part) return null;
  try {
    return decodeURIComponent(part.slice('device='.length)) || null;
  } catch {
    return null;
  }
}

function openDevicePage(id) {
  const hash = `#device=${encodeURIComponent(id)}`;
  if (location.hash !== hash) location.hash = hash; // hashchange opens it
  else routeDevicePage();
}

function closeDevicePage() {
  if (deviceFromFragment() !== null) history.replaceState(history.state, '', `${location.pathname}${location.search}`);
  devicePage.close();
}

function routeDevicePage() {
  const id = deviceFromFragment();
  if (id === null || !live) {
    if (devicePage.openId !== null) devicePage.close();
    return;
  }
  if (id !== devicePage.openId) devicePage.open(id);
}
window.addEventListener('hashchange', routeDevicePage);

let noticeTimer = null;
function showNotice(text) {
  els.noticeText.textContent = text;
  els.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    els.notice.hidden = true;
  }, NOTICE_MS);
}
els.noticeClose.addEventListener('click', () => {
  els.notice.hidden = true;
});

function renderShardWarning(failed) {
  if (failed.length === 0) {
    els.shardWarning.hidden = true;
    els.shardWarning.replaceChildren();
    return;
  }
  const items = failed.map((shard) =>
    h(
      'li',
      { dataset: { shard: String(shard.shard) } },
      h('strong', { text: `Shard ${String(shard.shard)}` }),
      `: ${typeof shard.error === 'string' && shard.error ? shard.error : 'unavailable'}`,
    ),
  );
  els.shardWarning.replaceChildren(
    h('p', { text: `Some of the store is unreachable: the devices it holds may be missing or out of date.` }),
    h('ul', {}, items),
  );
  els.shardWarning.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// REST state.

let reloading = null;
let reloadAgain = false;

/** Reload the fleet and the selected device's history. Concurrent calls are coalesced. */
function reloadState() {
  if (reloading) {
    reloadAgain = true;
    return reloading;
  }
  reloading = (async () => {
    do {
      reloadAgain = false;
      const device = selected;
      await Promise.all([loadDevices(), device ? loadHistory(device) : null]);
    } while (reloadAgain && live);
  })().finally(() => {
    reloading = null;
  });
  return reloading;
}

async function loadDevices() {
  if (!token) return;
  try {
    const data = await api.get('/api/devices');
    const devices = Array.isArray(data) ? data : Array.isArray(data?.devices) ? data.devices : [];
    const shards = Array.isArray(data?.shards) ? data.shards : [];
    const failed = shards.filter((shard) => isPlainObject(shard) && shard.ok === false);
    fleet.replaceAll(devices, { complete: failed.length === 0 });
    renderShardWarning(failed);
    if (selected && failed.length === 0 && !fleet.has(selected)) selectDevice(null);
  } catch (err) {
    if (err.status !== 401) showNotice(`Could not load the devices: ${err.message}`);
  }
}

let historyGeneration = 0;
async function loadHistory(id) {
  if (!token) return;
  const generation = ++historyGeneration;
  try {
    const data = await api.get(`${devicePath(id)}/commands?limit=20`);
    if (generation !== historyGeneration || selected !== id) return;
    const records = Array.isArray(data) ? data : Array.isArray(data?.commands) ? data.commands : [];
    commandList.loadHistory(records.filter(isCommandRecord));
  } catch (err) {
    if (generation !== historyGeneration || selected !== id || err.status === 401) return;
    commandList.loadFailed(`${err.code}: ${err.message}`);
  }
}

// `pending` is not in command events: re-fetch the device after a command event, at most once per
// second per device and a few requests at a time, so a busy fleet cannot flood the server.
const dirtyDevices = new Set();
const lastDeviceFetch = new Map();
const inflightDevices = new Set();
let pumpTimer = null;

function scheduleDeviceRefresh(id) {
  if (typeof id !== 'string' || id === '') return;
  dirtyDevices.add(id);
  schedulePump(0);
}

function schedulePump(delay) {
  if (pumpTimer !== null) return;
  pumpTimer = setTimeout(() => {
    pumpTimer = null;
    pumpDeviceRefresh();
  }, delay);
}

function pumpDeviceRefresh() {
  if (!live) return;
  const now = performance.now();
  let wait = Infinity;
  for (const [id, at] of lastDeviceFetch) {
    if (now - at >= DEVICE_REFRESH_MS && !inflightDevices.has(id)) lastDeviceFetch.delete(id);
  }
  for (const id of dirtyDevices) {
    if (inflightDevices.size >= DEVICE_REFRESH_CONCURRENCY) break;
    if (inflightDevices.has(id)) continue; // re-checked when that request ends
    const due = (lastDeviceFetch.get(id) ?? -Infinity) + DEVICE_REFRESH_MS - now;
    if (due > 0) {
      wait = Math.min(wait, due);
      continue;
    }
    dirtyDevices.delete(id);
    inflightDevices.add(id);
    lastDeviceFetch.set(id, now);
    refreshDevice(id).finally(() => {
      inflightDevices.delete(id);
      if (dirtyDevices.size) schedulePump(0);
    });
  }
  if (wait !== Infinity) schedulePump(wait);
}

async function refreshDevice(id) {
  try {
    const data = await api.get(devicePath(id));
    const record = isPlainObject(data?.device) ? data.device : data;
    if (isPlainObject(record) && record.id === id) fleet.upsert(record, 'rest');
  } catch (err) {
    if (err.status === 404) fleet.remove(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Live connection.

let openedWithCursor = false;

const socket = new LiveSocket({
  url: () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = `${scheme}//${location.host}/ws?token=${encodeURIComponent(token ?? '')}`;
    openedWithCursor = cursor !== null;
    if (cursor !== null) url += `&last_event_id=${encodeURIComponent(cursor)}`;
    return url;
  },
  onStatus: (status) => renderConnection(status),
  onOpen: () => {
    failuresBeforeOpen = 0;
    // Without a cursor the server only sends what happens from now on: anything that happened
    // while we were away is fetched over REST instead.
    if (!openedWithCursor) reloadState();
  },
  onClose: (info) => onSocketClose(info),
  onMessage: (message) => onServerMessage(message),
});

let lastProbe = 0;
let failuresBeforeOpen = 0;

function onSocketClose({ code, opened }) {
  failPendingReplies('The live connection closed before the server replied; the command may still have been accepted.');
  failuresBeforeOpen = opened ? 0 : failuresBeforeOpen + 1;
  // A refused handshake looks the same as a network failure to a browser, so ask REST:
  // - a 401 means the token is no longer good (the token form comes back, see createApi);
  // - if REST answers while the socket keeps being refused with a saved cursor, the server is
  //   refusing the cursor itself (unknown or malformed): drop it and reload the state over REST.
  const authClose = code === 1008 || code === 4001 || code === 4003 || code === 4401 || code === 4403;
  if (!(authClose || !opened) || !token) return;
  const suspectCursor = failuresBeforeOpen >= 2 && cursor !== null;
  if (!suspectCursor && Date.now() - lastProbe < 10_000) return;
  lastProbe = Date.now();
  const probedCursor = cursor;
  api.get('/api/fleet').then(
    () => {
      if (suspectCursor && live && failuresBeforeOpen >= 2 && cursor === probedCursor) {
        cursor = null;
        session.remove(KEYS.cursor);
        showNotice('The server would not resume the event stream from the saved position: the dashboard reloaded the current state instead.');
        socket.reconnectNow();
      }
    },
    () => {},
  );
}

function onServerMessage(message) {
  switch (message.type) {
    case 'event':
      onEvent(message);
      break;
    case 'accepted':
      onAccepted(message);
      break;
    case 'error':
      onErrorReply(message);
      break;
    case 'reset':
      onReset(message);
      break;
    case 'pong':
    default:
      break;
  }
}

function onEvent(message) {
  if (message.id !== undefined && message.id !== null) {
    cursor = String(message.id);
    session.set(KEYS.cursor, cursor);
  }
  const kind = typeof message.kind === 'string' ? message.kind : 'unknown';
  const data = message.data;
  if (kind === 'command' && isCommandRecord(data)) onCommandRecord(data);
  else if (kind === 'presence' && isPlainObject(data)) fleet.upsert(data, 'event');
  devicePage.addEvent(kind, data);
  eventLog.add(kind, data);
}

function onReset(message) {
  cursor = null;
  session.remove(KEYS.cursor);
  const reason = typeof message.reason === 'string' && message.reason ? ` (${message.reason})` : '';
  showNotice(`The event stream was reset${reason}: the dashboard reloaded the current state.`);
  reloadState();
}

function onCommandRecord(record) {
  commandList.upsert(record);
  devicePage.upsertCommand(record);
  scheduleDeviceRefresh(record.device);
}

// ---------------------------------------------------------------------------------------------
// Replies to our own send/cancel requests, by ref.

const pendingReplies = new Map(); // ref → {kind: 'send'|'cancel', commandId?, timer}

function expectReply(ref, info) {
  info.timer = setTimeout(() => {
    if (pendingReplies.get(ref) !== info) return;
    pendingReplies.delete(ref);
    replyFailed(info, 'No reply from the server within 15 s; the command may still have been accepted.');
  }, REPLY_TIMEOUT_MS);
  pendingReplies.set(ref, info);
}

function takeReply(ref) {
  const info = pendingReplies.get(ref);
  if (!info) return null;
  clearTimeout(info.timer);
  pendingReplies.delete(ref);
  return info;
}

function failPendingReplies(text) {
  for (const ref of [...pendingReplies.keys()]) replyFailed(takeReply(ref), text);
}

function replyFailed(info, text) {
  if (info.kind === 'send') {
    setSending(false);
    showConsoleError('no_reply', text);
  } else if (info.kind === 'cancel') {
    commandList.setCancelling(info.commandId, false);
    commandList.setNote(info.commandId, 'No reply to the cancel request; check the state above.');
  }
}

function onAccepted(message) {
  const info = takeReply(message.ref);
  const record = message.command;
  if (isCommandRecord(record)) onCommandRecord(record);
  if (info?.kind === 'send') {
    setSending(false);
    clearConsoleError();
    setText(els.consoleStatus, isCommandRecord(record) ? acceptedText(record) : 'Accepted.');
  } else if (info?.kind === 'cancel') {
    commandList.setCancelling(info.commandId, false);
    commandList.setNote(info.commandId, null);
  }
}

function onErrorReply(message) {
  const info = takeReply(message.ref);
  const error = isPlainObject(message.error) ? message.error : {};
  const code = typeof error.code === 'string' && error.code ? error.code : 'error';
  const text = typeof error.message === 'string' ? error.message : '';
  if (info?.kind === 'cancel') {
    commandList.setCancelling(info.commandId, false);
    commandList.setNote(info.commandId, `Cancel refused (${code})${text ? `: ${text}` : ''}`);
    return;
  }
  if (info?.kind === 'send') setSending(false);
  showConsoleError(code, text);
}

// ---------------------------------------------------------------------------------------------
// Command console.

const fieldErrors = {
  device: byId('console-device-error'),
  name: byId('console-name-error'),
  args: byId('console-args-error'),
  ttl: byId('console-ttl-error'),
};
const fieldInputs = { device: els.picker, name: els.name, args: els.args, ttl: els.ttl };

function setFieldError(field, text) {
  const input = fieldInputs[field];
  const slot = fieldErrors[field];
  slot.textContent = text || '';
  slot.hidden = !text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function clearFieldErrors() {
  for (const field of Object.keys(fieldErrors)) setFieldError(field, '');
}

function showConsoleError(code, text) {
  els.consoleError.replaceChildren(h('code', { class: 'error-code', text: code }), text ? ` ${text}` : '');
  els.consoleError.dataset.code = code;
  els.consoleError.hidden = false;
  setText(els.consoleStatus, '');
}

function clearConsoleError() {
  els.consoleError.hidden = true;
  els.consoleError.replaceChildren();
  delete els.consoleError.dataset.code;
}

let sending = false;
function setSending(on, statusText) {
  sending = on;
  els.send.disabled = on;
  els.form.setAttribute('aria-busy', String(on));
  if (statusText !== undefined) setText(els.consoleStatus, statusText);
}

/** Parse args text: {} when empty; an error message when it is not a JSON object. */
function parseArgs(text) {
  const raw = text.trim();
  if (raw === '') return { args: {} };
  let args;
  try {
    args = JSON.parse(raw);
  } catch (err) {
    return { error: `Args are not valid JSON: ${err.message}` };
  }
  if (!isPlainObject(args)) return { error: 'Args must be a JSON object, for example {"ms": 500}.' };
  if (new TextEncoder().encode(JSON.stringify(args)).length > ARGS_MAX_BYTES) {
    return { error: 'Args are larger than 64 KiB once encoded.' };
  }
  return { args };
}

function readConsole() {
  clearFieldErrors();
  let ok = true;
  const device = els.picker.value;
  if (!device) {
    setFieldError('device', 'Choose a device.');
    ok = false;
  }
  const name = els.name.value.trim();
  if (!name) {
    setFieldError('name', 'Enter a command name.');
    ok = false;
  }
  const parsed = parseArgs(els.args.value);
  if (parsed.error) {
    setFieldError('args', parsed.error);
    ok = false;
  }
  let ttl;
  const ttlText = els.ttl.value.trim();
  if (els.ttl.validity.badInput) {
    setFieldError('ttl', 'TTL must be a number of seconds.');
    ok = false;
  } else if (ttlText !== '') {
    ttl = Number(ttlText);
    if (!Number.isFinite(ttl) || ttl <= 0) {
      setFieldError('ttl', 'TTL must be a positive number of seconds.');
      ok = false;
    }
  }
  if (!ok) {
    const firstInvalid = Object.values(fieldInputs).find((input) => input.getAttribute('aria-invalid') === 'true');
    firstInvalid?.focus();
    return null;
  }
  return { device, name, args: parsed.args, ttl };
}

function onConsoleSubmit(event) {
  event.preventDefault();
  if (sending) return;
  clearConsoleError();
  const command = readConsole();
  if (!command) return;
  const { device, name, args, ttl } = command;
  if (device !== selected) selectDevice(device);

  const ref = newRef('send');
  const message = { type: 'send', ref, device, name, args };
  if (ttl !== undefined) message.ttl = ttl;
  if (socket.send(message)) {
    expectReply(ref, { kind: 'send' });
    setSending(true, 'Sending…');
  } else {
    sendOverRest(command);
  }
}

/** "Accepted: echo as <id>", and when the device is offline, that the command waits for it. */
function acceptedText(record) {
  const text = `Accepted: ${record.name} as ${record.id}`;
  const device = fleet.get(record.device);
  if (!device || device.online !== false || isTerminalState(record.state)) return text;
  const issued = Date.parse(record.issued_at);
  const expires = Date.parse(record.expires_at);
  const ttl = Number.isFinite(issued) && Number.isFinite(expires) ? `TTL ${formatDuration(Math.round((expires - issued) / 1000))}` : 'no TTL';
  return `${text}. ${record.device} is offline; the command waits until it reconnects (${ttl}).`;
}

function isTerminalState(state) {
  return !['queued', 'sent', 'delivered'].includes(state);
}

async function sendOverRest({ device, name, args, ttl }) {
  setSending(true, 'Sending over REST (the live connection is down)…');
  const body = { name, args };
  if (ttl !== undefined) body.ttl = ttl;
  try {
    const data = await api.post(`${devicePath(device)}/commands`, body);
    const record = isCommandRecord(data) ? data : data?.command;
    if (isCommandRecord(record)) {
      onCommandRecord(record);
      setText(els.consoleStatus, acceptedText(record));
    } else setText(els.consoleStatus, 'Accepted.');
  } catch (err) {
    showConsoleError(err.code || 'error', err.message || '');
  } finally {
    setSending(false);
  }
}

function cancelCommand(record) {
  const id = record.id;
  commandList.setNote(id, null);
  commandList.setCancelling(id, true);
  const ref = newRef('cancel');
  if (socket.send({ type: 'cancel', ref, command_id: id })) expectReply(ref, { kind: 'cancel', commandId: id });
  else cancelOverRest(id);
}

async function cancelOverRest(id) {
  try {
    const data = await api.post(`${commandPath(id)}/cancel`, {});
    const record = isCommandRecord(data) ? data : data?.command;
    if (isCommandRecord(record)) onCommandRecord(record);
  } catch (err) {
    commandList.setNote(id, `Cancel refused (${err.code || 'error'}): ${err.message || ''}`);
  } finally {
    commandList.setCancelling(id, false);
  }
}

function selectDevice(id) {
  if (!id) {
    selected = null;
    session.remove(KEYS.device);
    fleet.select(null);
    commandList.setDevice(null);
    return;
  }
  if (id === selected) {
    fleet.select(id);
    return;
  }
  selected = id;
  session.set(KEYS.device, id);
  fleet.select(id);
  commandList.setDevice(id);
  setFieldError('device', '');
  if (live) loadHistory(id);
}

els.form.addEventListener('submit', onConsoleSubmit);
els.picker.addEventListener('change', () => selectDevice(els.picker.value || null));
els.args.addEventListener('input', () => {
  if (!fieldErrors.args.hidden && !parseArgs(els.args.value).error) setFieldError('args', '');
});
els.args.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    els.form.requestSubmit();
  }
});
els.name.addEventListener('input', () => {
  if (els.name.value.trim()) setFieldError('name', '');
});
els.ttl.addEventListener('input', () => setFieldError('ttl', ''));
els.eventClear.addEventListener('click', () => eventLog.clear());
els.connRetry.addEventListener('click', () => socket.reconnectNow());
window.addEventListener('online', () => socket.reconnectNow());

// ---------------------------------------------------------------------------------------------
// Token form and start/stop.

function showTokenForm(message, { keepToken = false } = {}) {
  if (!keepToken) {
    token = null;
    session.remove(KEYS.token);
  }
  awaitingToken = true;
  stopLive();
  els.tokenMessage.textContent = message || '';
  els.tokenMessage.hidden = !message;
  els.tokenCancel.hidden = !token;
  els.tokenInput.value = '';
  els.tokenPanel.hidden = false;
  document.body.classList.add('needs-token');
  setBackgroundInert(true);
  renderConnection({ state: 'connecting' });
  els.tokenInput.focus();
}

function hideTokenForm() {
  awaitingToken = false;
  els.tokenPanel.hidden = true;
  document.body.classList.remove('needs-token');
  setBackgroundInert(false);
}

/** While the token dialog is open, everything behind it is out of reach (focus, clicks, AT). */
function setBackgroundInert(on) {
  for (const el of document.body.children) {
    if (el !== els.tokenPanel && el.tagName !== 'SCRIPT') el.inert = on;
  }
}

function stopLive() {
  live = false;
  devicePage.close();
  socket.stop();
  fleetPanel.stop();
  failPendingReplies('The live connection was stopped before the server replied.');
}

function startLive() {
  hideTokenForm();
  live = true;
  socket.start();
  fleetPanel.start();
  reloadState();
  if (dirtyDevices.size) schedulePump(0);
  routeDevicePage();
}

els.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const value = els.tokenInput.value.trim();
  if (!value) {
    els.tokenMessage.textContent = 'Enter a token.';
    els.tokenMessage.hidden = false;
    els.tokenInput.focus();
    return;
  }
  token = value;
  session.set(KEYS.token, token);
  els.tokenInput.value = '';
  startLive();
});
els.tokenCancel.addEventListener('click', () => {
  if (token) startLive();
});
els.tokenChange.addEventListener('click', () => showTokenForm('', { keepToken: true }));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && awaitingToken && token) startLive();
  else if (event.key === 'Escape' && !awaitingToken && devicePage.openId !== null) closeDevicePage();
});

// ---------------------------------------------------------------------------------------------
// Start.

setInterval(() => {
  fleet.tick();
  devicePage.tick();
}, 1000);
renderConnection({ state: 'connecting' });
const storedDevice = session.get(KEYS.device);
if (storedDevice) selectDevice(storedDevice);
if (token) startLive();
else showTokenForm('');
