// The dashboard's view: a time range picker, filter chips, the breakdown
// table, and the view kept in the URL, in a real Chromium against a real
// `rta serve` holding the README's fixture (2023-04-01 08:00 to 11:20).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { chromium } from 'playwright-core';

import { launchChromium, Server, SHOTS } from './server.mjs';
import { toLocalInput } from '../js/view.js';

const FIXTURE = resolve(import.meta.dirname, '../../fixtures/events.jsonl');
const events = readFileSync(FIXTURE, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const count = (keep) => events.filter(keep).length;
const FROM = '2023-04-01T08:00:00.000Z';
const TO = '2023-04-01T11:20:00.000Z';

let browser;
let server;
before(async () => {
  browser = await launchChromium(chromium);
  server = await Server.start();
  const response = await fetch(`${server.url}/api/ingest`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-ndjson' },
    body: readFileSync(FIXTURE),
  });
  assert.equal(response.status, 200);
});
after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function open(path = '/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  // A refused filter is asked of the server on purpose: its 400 is no error.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 400/.test(m.text())) errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.url}${path}`);
  await page.waitForSelector('#status[data-state="connected"]');
  return { context, page, errors };
}

/** The number a tile shows, as a number. */
async function tile(page, id) {
  return Number((await page.locator(`#${id}`).textContent()).replace(/[^\d.]/g, ''));
}

async function waitForTile(page, id, expected) {
  await page.waitForFunction(([i, e]) => Number(document.getElementById(i).textContent.replace(/[^\d.]/g, '')) === e,
    [id, expected], { timeout: 5000 });
}

const chips = (page) => page.locator('#chips .chip').evaluateAll((list) => list.map((c) => c.dataset.filter));

describe('the view', () => {
  test('the range picker shows a past range with its charts, and the URL keeps it', async () => {
    const { context, page, errors } = await open();
    // The fixture is years old: the last 5 minutes hold none of it.
    await waitForTile(page, 'window-events', 0);
    await page.selectOption('#window', 'custom');
    assert.equal(await page.isVisible('#range'), true);
    await page.fill('#range-from', toLocalInput(FROM));
    await page.fill('#range-to', toLocalInput(TO));
    await page.click('#range button[type="submit"]');
    await waitForTile(page, 'window-events', events.length);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('from'), FROM);
    assert.equal(url.searchParams.get('to'), TO);
    // The throughput chart spans the range and adds up to its events.
    const drawn = await page.evaluate(() => {
      const chart = window.Chart.getChart(document.getElementById('chart-throughput'));
      const points = chart.data.datasets.flatMap((d) => d.data);
      return { total: points.reduce((s, p) => s + (p.y || 0), 0), first: Math.min(...points.map((p) => p.x)) };
    });
    assert.equal(drawn.total, events.length);
    assert.equal(drawn.first, Date.parse(FROM));
    assert.match(await page.locator('#rate-hint').textContent(), /range/);
    await page.screenshot({ path: `${SHOTS}/range.png` });

    // Back to a relative window: the form hides, the URL follows.
    await page.selectOption('#window', 'all');
    await waitForTile(page, 'window-events', events.length);
    assert.equal(await page.isVisible('#range'), false);
    assert.equal(new URL(page.url()).searchParams.get('window'), 'all');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a click on a bar, a typed filter or a table value adds a chip; removing one widens again', async () => {
    const { context, page, errors } = await open(`/?from=${FROM}&to=${TO}`);
    await waitForTile(page, 'window-events', events.length);

    // Click the `sales` bar of "Events by type".
    const at = await page.evaluate(() => {
      const canvas = document.getElementById('chart-by-type');
      const chart = window.Chart.getChart(canvas);
      const i = chart.data.labels.indexOf('sales');
      const bar = chart.getDatasetMeta(0).data[i];
      const box = canvas.getBoundingClientRect();
      return { x: box.left + (bar.x + bar.base) / 2, y: box.top + bar.y };
    });
    await page.mouse.click(at.x, at.y);
    await page.waitForFunction(() => document.querySelectorAll('#chips .chip').length === 1);
    assert.deepEqual(await chips(page), ['type=sales']);
    await waitForTile(page, 'window-events', count((e) => e.type === 'sales'));
    assert.deepEqual(new URL(page.url()).searchParams.getAll('where'), ['type=sales']);

    // A typed filter on a measure.
    await page.fill('#filter-input', 'amount>100');
    await page.press('#filter-input', 'Enter');
    await waitForTile(page, 'window-events', count((e) => e.type === 'sales' && e.values.amount > 100));
    // A misspelt field is refused with the server's reason; nothing changes.
    await page.fill('#filter-input', 'regoin=Europe');
    await page.press('#filter-input', 'Enter');
    await page.waitForSelector('#filter-error:not([hidden])');
    assert.match(await page.locator('#filter-error').textContent(), /no field `regoin`.*region/);
    assert.deepEqual(await chips(page), ['type=sales', 'amount>100']);

    // The breakdown table, then a click on one of its values.
    await page.click('#tab-viz');
    await page.selectOption('#breakdown-type', 'sales');
    await page.selectOption('#breakdown-by', 'region');
    const europe = page.locator('#breakdown-body button.value', { hasText: /^Europe$/ });
    await europe.waitFor();
    const expected = count((e) => e.type === 'sales' && e.values.amount > 100 && e.values.region === 'Europe');
    const row = await europe.evaluate((b) => b.closest('tr').children[1].textContent);
    assert.equal(Number(row.replace(/[^\d]/g, '')), expected);
    await page.screenshot({ path: `${SHOTS}/breakdown.png` });
    await europe.click();
    await waitForTile(page, 'window-events', expected);
    assert.deepEqual(await chips(page), ['type=sales', 'amount>100', 'region=Europe']);

    // Removing chips widens the view again.
    await page.click('#chips button[aria-label="Remove filter amount>100"]');
    await waitForTile(page, 'window-events', count((e) => e.type === 'sales' && e.values.region === 'Europe'));
    for (const filter of ['type=sales', 'region=Europe']) {
      await page.click(`#chips button[aria-label="Remove filter ${filter}"]`);
    }
    await waitForTile(page, 'window-events', events.length);
    assert.deepEqual(new URL(page.url()).searchParams.getAll('where'), []);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a shared link opens the same view: range, filters, tab and breakdown', async () => {
    const link = `/?from=${encodeURIComponent(FROM)}&to=${encodeURIComponent(TO)}`
      + `&where=${encodeURIComponent('region=Europe')}&where=${encodeURIComponent('channel=web,mobile')}`
      + '&tab=viz&btype=sales&bby=channel';
    const { context, page, errors } = await open(link);
    const expected = count((e) => e.values.region === 'Europe' && ['web', 'mobile'].includes(e.values.channel));
    await waitForTile(page, 'window-events', expected);
    assert.equal(await page.locator('#window').inputValue(), 'custom');
    assert.equal(Date.parse(await page.inputValue('#range-from')), Date.parse(toLocalInput(FROM)));
    assert.deepEqual(await chips(page), ['region=Europe', 'channel=web,mobile']);
    assert.equal(await page.getAttribute('#tab-viz', 'aria-selected'), 'true');
    assert.equal(await page.locator('#breakdown-by').inputValue(), 'channel');
    await page.locator('#breakdown-body button.value', { hasText: /^web$/ }).waitFor();
    const values = await page.locator('#breakdown-body button.value').allTextContents();
    assert.deepEqual(values.sort(), ['mobile', 'web']);
    await page.screenshot({ path: `${SHOTS}/shared-link.png` });

    // A link with a filter the server refuses says why instead of spinning.
    const bad = await context.newPage();
    await bad.goto(`${server.url}/?where=${encodeURIComponent('nosuch=1')}`);
    await bad.waitForSelector('#filter-error:not([hidden])');
    assert.match(await bad.locator('#filter-error').textContent(), /no field `nosuch`/);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
