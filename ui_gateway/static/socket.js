// A WebSocket that keeps itself connected.
//
// - Reconnects after any close with exponential backoff and FULL jitter:
//     delay = random(0, min(cap, base * 2 ** attempt)), base 500 ms, cap 15 s.
//   `attempt` goes back to 0 once a connection proves healthy: it received a message, or it
//   stayed open for `stableAfter` ms.
// - Sends an application-level {"type":"ping"} every 20 s while open (browsers cannot send
//   ping frames) and abandons a connection that has been silent for `staleAfter` ms, since a
//   half-open TCP connection can otherwise look open for minutes.
// - Reports its state: "connecting" | "live" | "reconnecting" (with the time of the next try).

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 15_000;

/** Full-jitter backoff delay for a given attempt number (0-based). */
export function backoffDelay(attempt, { base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS, random = Math.random } = {}) {
  const ceiling = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  return random() * ceiling;
}

export class LiveSocket {
  /**
   * @param {object} options
   * @param {() => string} options.url            URL for the next connection (token, cursor)
   * @param {(msg: object) => void} options.onMessage  every parsed JSON object from the server
   * @param {(status: {state: string, retryAt?: number, attempt: number}) => void} options.onStatus
   * @param {() => void} [options.onOpen]
   * @param {(info: {code: number, reason: string, opened: boolean}) => void} [options.onClose]
   */
  constructor({
    url,
    onMessage,
    onStatus,
    onOpen = () => {},
    onClose = () => {},
    base = BACKOFF_BASE_MS,
    cap = BACKOFF_CAP_MS,
    pingEvery = 20_000,
    stableAfter = 5_000,
    staleAfter = 50_000,
  }) {
    Object.assign(this, { url, onMessage, onStatus, onOpen, onClose });
    this.options = { base, cap, pingEvery, stableAfter, staleAfter };
    this.ws = null;
    this.running = false;
    this.attempt = 0;
    this.state = 'connecting';
    this.retryAt = 0;
    this.lastMessageAt = 0;
    this.pingCount = 0;
    this.timers = { retry: null, stable: null, ping: null };
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    this._connect();
  }

  /** Close for good (e.g. the token was rejected). `start()` resumes. */
  stop() {
    this.running = false;
    this._clearTimer('retry');
    this._drop(1000, 'client stopped');
    this._setState('connecting');
  }

  /** Skip the remaining backoff wait (e.g. the user clicked "retry now", or the browser came online). */
  reconnectNow() {
    if (this.running && this.state === 'reconnecting') this._connect();
  }

  /** Send a JSON message; false when the socket is not open (the caller falls back to REST). */
  send(message) {
    if (!this.isOpen) return false;
    try {
      this.ws.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  _connect() {
    this._clearTimer('retry');
    this._drop(1000, 'reconnecting');
    this._setState('connecting');

    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    const connection = { opened: false, gotMessage: false };

    ws.onopen = () => {
      if (this.ws !== ws) return;
      connection.opened = true;
      this.lastMessageAt = performance.now();
      this._setState('live');
      this.timers.stable = setTimeout(() => {
        this.timers.stable = null;
        this.attempt = 0;
      }, this.options.stableAfter);
      this.timers.ping = setInterval(() => this._heartbeat(), this.options.pingEvery);
      this.onOpen();
    };

    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      this.lastMessageAt = performance.now();
      if (!connection.gotMessage) {
        connection.gotMessage = true;
        this.attempt = 0;
      }
      if (typeof event.data !== 'string') return; // the contract only uses JSON text frames
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not JSON: ignore rather than break the stream
      }
      if (message === null || typeof message !== 'object' || Array.isArray(message)) return;
      try {
        this.onMessage(message);
      } catch (err) {
        // A bug in a handler must not take the connection down with it.
        console.error('tether: failed to handle a server message', err);
      }
    };

    ws.onerror = () => {
      /* a close event always follows; reconnection is handled there */
    };

    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this._detach();
      this.onClose({ code: event.code, reason: event.reason, opened: connection.opened });
      if (this.running) this._scheduleReconnect();
    };
  }

  _heartbeat() {
    if (!this.isOpen) return;
    if (performance.now() - this.lastMessageAt > this.options.staleAfter) {
      // No pong and no event for too long: treat the connection as dead.
      const opened = true;
      this._drop(4000, 'no reply to ping');
      this.onClose({ code: 4000, reason: 'no reply to ping', opened });
      if (this.running) this._scheduleReconnect();
      return;
    }
    this.pingCount += 1;
    this.send({ type: 'ping', ref: `ping-${this.pingCount}` });
  }

  _scheduleReconnect() {
    const delay = backoffDelay(this.attempt, this.options);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this._clearTimer('retry');
    this.timers.retry = setTimeout(() => {
      this.timers.retry = null;
      if (this.running) this._connect();
    }, delay);
    this._setState('reconnecting');
  }

  /** Forget the current socket (handlers detached so it can no longer call back) and close it. */
  _drop(code, reason) {
    const ws = this.ws;
    this._detach();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code, reason);
    } catch {
      /* already closing */
    }
  }

  _detach() {
    this.ws = null;
    this._clearTimer('stable');
    this._clearTimer('ping');
  }

  _clearTimer(name) {
    const timer = this.timers[name];
    if (timer === null) return;
    clearTimeout(timer); // also clears intervals
    this.timers[name] = null;
  }

  _setState(state) {
    this.state = state;
    this.onStatus({ state, retryAt: state === 'reconnecting' ? this.retryAt : undefined, attempt: this.attempt });
  }
}
