// The live connection: a WebSocket to /api/ws with a visible status,
// reconnecting with backoff and resyncing from the snapshot it sends.

const MIN_DELAY = 500;
const MAX_DELAY = 10000;

export class Live {
  /**
   * @param {(message: object) => void} onMessage called for every snapshot and update
   * @param {(state: string, text: string) => void} onStatus connecting | connected | reconnecting | offline
   */
  constructor(onMessage, onStatus) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.params = new URLSearchParams();
    this.delay = MIN_DELAY;
    this.failures = 0;
    this.socket = null;
    this.timer = null;
  }

  /** Connects with these query parameters (replacing any current connection). */
  connect(params) {
    this.params = new URLSearchParams(params);
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
    socket.onopen = () => {
      this.delay = MIN_DELAY;
      this.failures = 0;
      this.onStatus('connected', 'Live');
    };
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      this.onMessage(message);
    };
    socket.onclose = () => this.retry();
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
