// The live connection: a WebSocket to /api/ws with a visible status,
// reconnecting with backoff and resyncing from the snapshot it sends.

const MIN_DELAY = 500;
const MAX_DELAY = 10000;

export class Live {
  /**
   * @param {(message: object) => void} onMessage called for every snapshot and update
   * @param {(state: string, text: string) => void} onStatus connecting | connected | reconnecting | offline | locked
   * @param {() => void} onUnauthorized the server wants a token we do not have
   * @param {(message: string) => void} onInvalid the server refuses the view (a bad filter or range)
   */
  constructor(onMessage, onStatus, onUnauthorized, onInvalid) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.onInvalid = onInvalid;
    this.token = '';
    this.params = new URLSearchParams();
    this.delay = MIN_DELAY;
    this.failures = 0;
    this.socket = null;
    this.timer = null;
  }

  /** Connects with these query parameters (replacing any current connection). */
  connect(params, token = this.token) {
    this.token = token;
    this.params = new URLSearchParams(params);
    if (token) this.params.set('access_token', token);
    this.delay = MIN_DELAY;
    this.failures = 0;
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
    }
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/api/ws?${this.params}`);
    this.socket = socket;
    this.onStatus(this.failures ? 'reconnecting' : 'connecting', this.failures ? 'Reconnecting…' : 'Connecting…');
    let opened = false;
    let synced = false;
    socket.onopen = () => {
      opened = true;
      this.delay = MIN_DELAY;
      this.failures = 0;
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
      // "Live" once the page shows the server's state (its first message is
      // the snapshot), not merely when the socket opens.
      if (!synced) {
        synced = true;
        this.onStatus('connected', 'Live');
      }
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      // 1013: the server is at its limit of watched views; it says why.
      if (event.code === 1013) {
        this.onInvalid(event.reason || 'the server is busy; retrying');
        this.delay = MAX_DELAY;
        this.retry();
        return;
      }
      if (opened) this.retry();
      else this.diagnose(socket);
    };
  }

  /** The handshake failed: find out whether a token is missing or the view is refused before retrying. */
  async diagnose(socket) {
    try {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      const view = new URLSearchParams(this.params);
      view.delete('access_token');
      view.set('top', '1');
      const response = await fetch(`/api/metrics?${view}`, { headers });
      if (this.socket !== socket) return; // a newer connection took over
      if (response.status === 401) {
        this.onStatus('locked', 'Token needed');
        this.onUnauthorized();
        return;
      }
      if (response.status === 400) {
        const body = await response.json().catch(() => ({}));
        this.onStatus('offline', 'View refused');
        this.onInvalid(body.message || 'the server refused this view');
        return;
      }
    } catch {
      // The server is down: retry below.
    }
    if (this.socket === socket) this.retry();
  }

  retry() {
    this.failures += 1;
    const wait = Math.round(this.delay * (0.8 + Math.random() * 0.4));
    this.delay = Math.min(this.delay * 2, MAX_DELAY);
    const state = this.failures > 3 ? 'offline' : 'reconnecting';
    const label = state === 'offline' ? 'Offline' : 'Reconnecting';
    this.onStatus(state, `${label} · retry in ${Math.ceil(wait / 1000)} s`);
    this.timer = setTimeout(() => this.open(), wait);
  }
}
