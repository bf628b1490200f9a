// The alert rules and where each stands, from GET /api/alerts: polled
// every few seconds while the page is visible; the card shows only when
// there are rules.

import { el, number } from './format.js';

const EVERY_MS = 3000;

function condition(rule) {
  if (rule.above !== undefined) return `${rule.stat} > ${number(rule.above)}`;
  if (rule.below !== undefined) return `${rule.stat} < ${number(rule.below)}`;
  return 'no events';
}

function ago(iso) {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function render(rules) {
  const card = document.getElementById('alerts');
  card.hidden = rules.length === 0;
  const firing = rules.filter((r) => r.state === 'firing').length;
  const summary = document.getElementById('alerts-summary');
  summary.classList.toggle('firing', firing > 0);
  summary.textContent = firing
    ? `${firing} of ${rules.length} firing`
    : `${rules.length} rule${rules.length === 1 ? '' : 's'}, none firing`;
  // Firing first, then pending, then by name.
  const order = { firing: 0, pending: 1, ok: 2 };
  const rows = [...rules]
    .sort((a, b) => order[a.state] - order[b.state] || a.name.localeCompare(b.name))
    .map((rule) => {
      const tr = el('tr');
      tr.dataset.rule = rule.name;
      tr.dataset.state = rule.state;
      const state = el('td');
      state.append(el('span', rule.state, `state ${rule.state}`));
      const scope = [rule.type, ...(rule.where || [])].filter(Boolean).join(' · ') || 'all events';
      tr.append(
        el('td', rule.name),
        state,
        el('td', `${condition(rule)} over ${rule.window}${rule.for ? ` for ${rule.for}` : ''}`),
        el('td', scope),
        el('td', rule.value === undefined ? '–' : number(rule.value), 'num'),
        el('td', ago(rule.changedAt)),
      );
      return tr;
    });
  document.getElementById('alerts-body').replaceChildren(...rows);
}

/** Polls the rules; `headers` gives the current Authorization header. */
export function watchAlerts(headers) {
  const poll = async () => {
    if (document.visibilityState === 'visible') {
      try {
        const response = await fetch('/api/alerts', { headers: headers() });
        if (response.ok) render(await response.json());
      } catch {
        // Offline for now: the next poll tries again.
      }
    }
    setTimeout(poll, EVERY_MS);
  };
  poll();
}
