// The dashboard in a real headless Chromium against a real `rta serve`.

import { createServer } from 'node:http';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

import { launchChromium, Server, SHOTS, sales, users } from './server.mjs';

let browser;
before(async () => {
  browser = await launchChromium(chromium);
});
after(async () => {
  await browser?.close();
});

/** Opens the dashboard, recording every request and every console error. */
async function open(server, { colorScheme = 'light', viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ colorScheme, viewport });
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const response = await page.goto(server.url);
  return { context, page, requests, errors, response };
}

const text = (page, selector) => page.locator(selector).textContent();

async function waitForText(page, selector, expected, timeout = 2000) {
  await page.waitForFunction(([s, e]) => document.querySelector(s)?.textContent === e, [selector, expected], { timeout });
}

test('shows a friendly empty state, then fills live within two seconds', async () => {
  const server = await Server.start();
  try {
    const { context, page, errors, response } = await open(server);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
    await page.waitForSelector('#status[data-state="connected"]');
    assert.equal(await page.isVisible('#empty'), true);
    assert.match(await text(page, '#empty'), /rta generate/);
    await page.screenshot({ path: `${SHOTS}/empty.png` });

    await server.ingest([...sales(30), ...users(12)]);
    await waitForText(page, '#total-events', '42');
    assert.equal(await page.isVisible('#empty'), false);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.dispose();
  }
});

describe('dashboard', () => {
  // Each test has a server and data of its own: none counts on another's.
  let server;
  beforeEach(async () => {
    server = await Server.start();
    await server.ingest([...sales(30), ...users(12)]);
  });
  afterEach(async () => { await server.dispose(); });

  test('has three tabs that switch, with charts drawn on each', async () => {
    const { context, page, errors } = await open(server);
    await waitForText(page, '#total-events', '42');
    const tabs = await page.locator('[role="tab"]').allTextContents();
    assert.deepEqual(tabs, ['Data Engineering', 'Stream Processing', 'Visualization']);
    const panels = {
      'Data Engineering': ['#panel-engineering', ['chart-by-type', 'chart-throughput']],
      'Stream Processing': ['#panel-stream', ['chart-series', 'chart-types-over-time']],
      Visualization: ['#panel-viz', ['chart-distribution', 'chart-compare']],
    };
    for (const [name, [panel, canvases]] of Object.entries(panels)) {
      // The charts of a tab have their size as soon as it is shown, not a frame later.
      const widths = await page.evaluate(([tabName, ids]) => {
        [...document.querySelectorAll('[role="tab"]')].find((t) => t.textContent.trim() === tabName).click();
        return ids.map((id) => document.getElementById(id).width);
      }, [name, canvases]);
      assert.ok(widths.every((w) => w > 0), `${name}: canvases sized at once (${widths})`);
      await page.getByRole('tab', { name }).click();
      assert.equal(await page.isVisible(panel), true, `${name} is shown`);
      for (const other of Object.values(panels).map(([p]) => p).filter((p) => p !== panel)) {
        assert.equal(await page.isVisible(other), false, `${other} is hidden on ${name}`);
      }
      for (const id of canvases) {
        const drawn = await page.evaluate((canvasId) => {
          const chart = window.Chart.getChart(document.getElementById(canvasId));
          const points = chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null && (v.y ?? v) !== null).length, 0);
          // Something other than the background was painted.
          const canvas = chart.canvas;
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let painted = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
          return { points, painted };
        }, id);
        assert.ok(drawn.points > 0, `${id} has data (${JSON.stringify(drawn)})`);
        assert.ok(drawn.painted > 500, `${id} is painted (${JSON.stringify(drawn)})`);
      }
      await page.screenshot({ path: `${SHOTS}/${name.toLowerCase().replace(' ', '-')}.png`, fullPage: true });
    }
    // The stream tab discovers fields from the data.
    await page.getByRole('tab', { name: 'Stream Processing' }).click();
    await page.selectOption('#series-type', 'users');
    const fields = await page.locator('#series-field option').allTextContents();
    assert.deepEqual(fields, ['events (count)', 'active', 'new']);
    // Live tiles show latest, mean and p95 for each measure.
    await page.getByRole('tab', { name: 'Visualization' }).click();
    assert.equal(await page.locator('#metric-tiles .tile').count(), 4);
    assert.match(await text(page, '[data-metric="users.active"]'), /911.*mean.*p95/);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the recent events table shows the newest events, hostile strings as text', async () => {
    const { context, page, errors, requests } = await open(server);
    await waitForText(page, '#total-events', '42');
    const hostile = '<img src=x onerror="window.__pwned=1">';
    await server.ingest([{ type: 'sales', source: hostile, values: { amount: 1, region: '<script>window.__pwned=2</script>' } }]);
    await waitForText(page, '#total-events', '43');
    const firstRow = page.locator('#recent-events tr').first();
    assert.equal(await firstRow.locator('td').nth(2).textContent(), hostile);
    assert.match(await firstRow.locator('td').nth(3).textContent(), /<script>window.__pwned=2<\/script>/);
    assert.equal(await page.locator('#recent-events img, #recent-events script').count(), 0);
    await page.getByRole('tab', { name: 'Visualization' }).click();
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing executed');
    const rows = await page.locator('#recent-events tr').count();
    assert.ok(rows >= 43 || rows === 50, `table holds the recent events (${rows})`);
    // Only the server itself was asked for anything.
    const foreign = requests.filter((u) => !u.startsWith(server.url) && !u.startsWith(server.url.replace('http', 'ws')) && !u.startsWith('data:'));
    assert.deepEqual(foreign, []);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('dark theme and a phone-width layout', async () => {
    const dark = await open(server, { colorScheme: 'dark' });
    await waitForText(dark.page, '#total-events', '42');
    const bg = await dark.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(15, 18, 24)');
    await dark.page.screenshot({ path: `${SHOTS}/dark.png`, fullPage: true });
    await dark.context.close();

    const phone = await open(server, { viewport: { width: 390, height: 844 } });
    await waitForText(phone.page, '#total-events', '42');
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px)`);
    await phone.page.screenshot({ path: `${SHOTS}/phone.png`, fullPage: true });
    const paint = await phone.page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
    console.log(`first contentful paint on localhost: ${Math.round(paint)} ms`);
    await phone.context.close();
  });

  test('pause holds the view; window selection reconnects', async () => {
    const { context, page } = await open(server);
    await waitForText(page, '#total-events', '42');
    await page.click('#pause');
    await server.ingest(sales(2));
    await page.waitForTimeout(800);
    assert.equal(await text(page, '#total-events'), '42', 'paused');
    await page.click('#pause');
    await waitForText(page, '#total-events', '44');
    await page.selectOption('#window', '1h');
    await waitForText(page, '#window-label', 'last hour');
    await page.waitForSelector('#status[data-state="connected"]');
    await waitForText(page, '#window-events', '44');
    await context.close();
  });
});

test('reconnects and resyncs after the server restarts', async () => {
  let server = await Server.start();
  const { context, page } = await open(server);
  try {
    await server.ingest(sales(5));
    await waitForText(page, '#total-events', '5');
    const { addr, dir } = server;
    await server.stop();
    await page.waitForSelector('#status:is([data-state="reconnecting"], [data-state="offline"])', { timeout: 5000 });
    server = await Server.start({ dir, addr });
    await server.ingest(sales(3));
    await page.waitForSelector('#status[data-state="connected"]', { timeout: 15000 });
    await waitForText(page, '#total-events', '8', 5000);
  } finally {
    await context.close();
    await server.dispose();
  }
});

test('asks for the read token, and remembers it', async () => {
  const server = await Server.start({ args: ['--read-token', 'letmein'] });
  try {
    await server.ingest(sales(4));
    const { context, page, errors } = await open(server);
    await page.waitForSelector('#auth:not([hidden])');
    assert.equal(await page.isVisible('#panel-engineering'), false, 'no data without the token');
    await page.fill('#auth-token', 'wrong');
    await page.click('#auth-form button');
    await page.waitForSelector('#auth-error:not([hidden])');
    await page.fill('#auth-token', 'letmein');
    await page.click('#auth-form button');
    await waitForText(page, '#total-events', '4', 5000);
    await page.reload();
    await waitForText(page, '#total-events', '4', 5000);
    assert.equal(await page.isVisible('#auth'), false, 'the token is remembered');
    // A link can carry the token in its fragment, which never reaches the server.
    const fresh = await browser.newContext();
    const linked = await fresh.newPage();
    await linked.goto(`${server.url}/#token=letmein`);
    await waitForText(linked, '#total-events', '4', 5000);
    assert.equal(new URL(linked.url()).hash, '', 'the token is taken out of the address bar');
    await fresh.close();
    // The browser itself reports the refused handshakes; nothing else may fail.
    assert.deepEqual(errors.filter((e) => !e.includes('401') && !e.includes('Authentication failed')), []);
    await context.close();
  } finally {
    await server.dispose();
  }
});

test('shows which alert rules fire and when each last changed', async () => {
  // A webhook receiver: every notification answered 200.
  const hooks = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { hooks.push(JSON.parse(body)); res.end('ok'); });
  });
  await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const webhook = `http://127.0.0.1:${receiver.address().port}/hook`;
  const server = await Server.start({ args: ['--alert-interval', '200ms', '--allow-private-webhooks'] });
  try {
    const { context, page, errors } = await open(server);
    await page.waitForSelector('#status[data-state="connected"]');
    assert.equal(await page.isVisible('#alerts'), false, 'no rules, no card');
    for (const rule of [
      { name: 'big-sales', type: 'sales', stat: 'max:amount', window: '1h', above: 30, webhook },
      { name: 'no-users', type: 'users', window: '10m', absent: true, for: '1h', webhook },
      { name: 'quiet', type: 'sales', stat: 'count', window: '1h', above: 1000, webhook },
    ]) {
      const response = await fetch(`${server.url}/api/alerts`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(rule),
      });
      assert.equal(response.status, 201, await response.text());
    }
    await server.ingest(sales(30));
    await page.waitForSelector('#alerts tr[data-rule="big-sales"][data-state="firing"]', { timeout: 10000 });
    await page.waitForSelector('#alerts tr[data-rule="no-users"][data-state="pending"]', { timeout: 10000 });
    await page.waitForSelector('#alerts tr[data-rule="quiet"][data-state="ok"]');
    assert.equal(await text(page, '#alerts-summary'), '1 of 3 firing');
    const first = await page.locator('#alerts-body tr').first().getAttribute('data-rule');
    assert.equal(first, 'big-sales', 'firing rules first');
    assert.match(await text(page, '#alerts tr[data-rule="big-sales"]'), /max:amount > 30 over 1h.*sales.*s ago/);
    assert.equal(hooks.length, 1);
    assert.equal(hooks[0].rule, 'big-sales');
    await page.screenshot({ path: `${SHOTS}/alerts.png`, fullPage: true });
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    await server.dispose();
    receiver.close();
  }
});
