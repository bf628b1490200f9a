// The API docs page (/docs) in a real headless Chromium: Swagger UI under a
// strict Content-Security-Policy, sending a token with "Try it out".

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

import { launchChromium, Server, SHOTS, sales } from './server.mjs';

let browser;
before(async () => {
  browser = await launchChromium(chromium);
});
after(async () => {
  await browser?.close();
});

test('the docs run under their CSP and "Try it out" sends the token', async () => {
  const server = await Server.start({ args: ['--read-token', 'docs-reader'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  try {
    await server.ingest(sales(7));
    const page = await context.newPage();
    const errors = [];
    const requests = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(r.url()));
    const response = await page.goto(`${server.url}/docs`);
    const csp = response.headers()['content-security-policy'];
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);

    // The spec loads and lists the operations, with the lock on read routes.
    const metricsOp = page.locator('.opblock-get', { hasText: '/api/metrics' }).first();
    await metricsOp.waitFor({ timeout: 10000 });
    await page.locator('button.authorize').first().click();
    const readScheme = page.locator('.auth-container', { hasText: 'readToken' });
    await readScheme.locator('input').fill('docs-reader');
    await readScheme.locator('button.authorize').click();
    await page.locator('button.btn-done').first().click();

    await metricsOp.locator('.opblock-summary').click();
    await metricsOp.locator('button.try-out__btn').click();
    await metricsOp.locator('button.execute').click();
    const status = metricsOp.locator('.live-responses-table tr.response .response-col_status').first();
    await status.waitFor({ timeout: 10000 });
    assert.equal((await status.textContent()).trim(), '200');
    const body = await metricsOp.locator('.live-responses-table .microlight, .live-responses-table pre').first().textContent();
    assert.match(body, /"totalEvents": 7/);
    await page.screenshot({ path: `${SHOTS}/docs.png` });

    // Everything came from this server, and nothing broke the CSP.
    assert.deepEqual(requests.filter((u) => !u.startsWith(server.url) && !u.startsWith('data:')), []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    await server.dispose();
  }
});
