// REST client: bearer auth, JSON in and out, contract errors as ApiError.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 for a network failure)
   * @param {string} code   the contract's stable error code, or "http_<status>" / "network"
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {{getToken: () => string|null, onUnauthorized: (message: string) => void}} options
 */
export function createApi({ getToken, onUnauthorized }) {
  async function request(method, path, { body, headers = {}, signal } = {}) {
    const token = getToken();
    const init = {
      method,
      headers: { Accept: 'application/json', ...headers },
      cache: 'no-store',
      signal,
    };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }

    let response;
    let text = '';
    try {
      response = await fetch(path, init);
      text = await response.text();
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network', 'The server could not be reached.');
    }

    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }

    if (!response.ok) {
      const error = data && typeof data.error === 'object' && data.error !== null ? data.error : {};
      const code = typeof error.code === 'string' ? error.code : `http_${response.status}`;
      const message =
        typeof error.message === 'string' && error.message
          ? error.message
          : response.statusText || `HTTP ${response.status}`;
      // Only a 401 for the token currently in use means "ask for a token again": a slow request
      // made with an older token must not throw away the one the user just typed.
      if (response.status === 401 && token === getToken()) onUnauthorized(message);
      throw new ApiError(response.status, code, message);
    }
    return data;
  }

  return {
    request,
    get: (path, options) => request('GET', path, options),
    post: (path, body, options) => request('POST', path, { ...options, body }),
  };
}

/** `/api/devices/{id}` with the id safely encoded as one path segment. */
export function devicePath(id) {
  return `/api/devices/${encodeURIComponent(id)}`;
}

export function commandPath(id) {
  return `/api/commands/${encodeURIComponent(id)}`;
}
