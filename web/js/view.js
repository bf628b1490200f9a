// What the dashboard looks at: a time range (a relative window, or from/to),
// filters in the API's `where` syntax, the open tab and the breakdown. It
// lives in the page's URL, so a link shows the same view; a token never
// goes there.

export const WINDOWS = ['5m', '15m', '1h', '24h', '7d', '30d', 'all'];

export class View {
  constructor() {
    this.window = '5m';
    this.from = null; // ISO 8601, UTC
    this.to = null;
    this.filters = [];
    this.tab = null;
    this.breakdownType = null;
    this.breakdownBy = null;
  }

  /** The view a URL's query string describes (unknown values fall back to defaults). */
  static fromSearch(search) {
    const q = new URLSearchParams(search);
    const view = new View();
    const from = validTime(q.get('from'));
    if (from) {
      view.window = null;
      view.from = from;
      view.to = validTime(q.get('to'));
    } else if (WINDOWS.includes(q.get('window'))) {
      view.window = q.get('window');
    }
    view.filters = q.getAll('where').map((f) => f.trim()).filter(Boolean);
    view.tab = q.get('tab');
    view.breakdownType = q.get('btype');
    view.breakdownBy = q.get('bby');
    return view;
  }

  get custom() {
    return this.window === null;
  }

  /** The time range and filters as API parameters (pairs: `where` repeats). */
  params() {
    const pairs = this.custom
      ? [['from', this.from], ...(this.to ? [['to', this.to]] : [])]
      : [['window', this.window]];
    return [...pairs, ...this.filters.map((f) => ['where', f])];
  }

  /** The same as a JSON query body for POST /api/query. */
  queryBody() {
    const body = this.custom ? { from: this.from } : { window: this.window };
    if (this.custom && this.to) body.to = this.to;
    if (this.filters.length) body.where = [...this.filters];
    return body;
  }

  /** The query string of a link to this view. */
  search() {
    const q = new URLSearchParams(this.params());
    if (this.tab) q.set('tab', this.tab);
    if (this.breakdownType) q.set('btype', this.breakdownType);
    if (this.breakdownBy) q.set('bby', this.breakdownBy);
    return `?${q}`;
  }
}

function validTime(text) {
  if (!text) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** A value's name as a filter or breakdown names it (`values.type` for a value named like an event's own field). */
export function field(name) {
  return name === 'type' || name === 'source' ? `values.${name}` : name;
}

/** A filter `name=value` matching one value exactly (commas and backslashes escaped). */
export function equals(name, value) {
  return `${name}=${String(value).replace(/\\/g, '\\\\').replace(/,/g, '\\,')}`;
}

/** `2023-04-01T09:00:00.000Z` as the value of a datetime-local input (local time). */
export function toLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local input's value (local time) as ISO 8601 UTC, or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** A short description of a range for a label. */
export function describeRange(from, to) {
  const opts = { dateStyle: 'medium', timeStyle: 'short' };
  const a = new Date(from).toLocaleString([], opts);
  return to ? `${a} – ${new Date(to).toLocaleString([], opts)}` : `since ${a}`;
}
