// Formatting and safe DOM building. Every string from events goes through
// textContent, never innerHTML.

const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const plain = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

/** A number for a tile: exact below 100k, compact above. */
export function number(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  return Math.abs(x) >= 100000 ? compact.format(x) : plain.format(x);
}

/** HH:MM:SS in local time. */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString([], { hour12: false });
}

/** A short axis label for a timestamp in milliseconds. */
export function axisTime(ms, stepSeconds) {
  const d = new Date(ms);
  const opts = stepSeconds >= 3600 ? { hour: '2-digit', minute: '2-digit', day: 'numeric' }
    : stepSeconds >= 60 ? { hour: '2-digit', minute: '2-digit' }
      : { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  return d.toLocaleTimeString([], { ...opts, hour12: false });
}

/** Creates an element with text content (never HTML). */
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

/** Replaces a select's options, keeping the current choice when it still exists. */
export function setOptions(select, values, preferred) {
  const current = select.value || preferred;
  const same = select.options.length === values.length
    && values.every((v, i) => select.options[i].value === v);
  if (!same) {
    select.replaceChildren(...values.map((v) => {
      const option = el('option', v);
      option.value = v;
      return option;
    }));
  }
  if (values.includes(current)) select.value = current;
  else if (values.length) select.value = values[0];
  return select.value;
}

/** The n-th colour of the palette, for values listed in order. */
export function nthColour(n) {
  return PALETTE[n % PALETTE.length];
}

const PALETTE = ['#4f6bed', '#12a36b', '#e8833a', '#c2459b', '#1aa3c7', '#d1453b', '#8a63d2', '#9c8b1b'];
const assigned = new Map();

/** A colour per name (an event type), distinct for the first eight names seen and stable for the page's life. */
export function colour(name) {
  if (!assigned.has(name)) assigned.set(name, PALETTE[assigned.size % PALETTE.length]);
  return assigned.get(name);
}

const short = new Intl.NumberFormat(undefined, { notation: 'compact', maximumSignificantDigits: 3 });

/** A number in at most about four characters, for secondary figures. */
export function brief(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '–';
  return Math.abs(x) >= 1000 ? short.format(x) : plain.format(x);
}
