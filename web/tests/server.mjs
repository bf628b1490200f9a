// Starts a real `rta serve` on port 0 (or a given port) with a temporary
// data directory, and talks to it; launches the browser the tests drive.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BIN = process.env.RTA_BIN || resolve(import.meta.dirname, '../../target/debug/rta');

/** Where browser tests leave their screenshots. */
export const SHOTS = resolve(import.meta.dirname, '../../target/screenshots');
mkdirSync(SHOTS, { recursive: true });

/**
 * Debian's Chromium, headless, with nothing that reaches beyond this machine.
 * @param {import('playwright-core').BrowserType} chromium
 */
export function launchChromium(chromium) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

export class Server {
  static async start({ dir = mkdtempSync(join(tmpdir(), 'rta-web-')), addr = '127.0.0.1:0', args = [] } = {}) {
    const child = spawn(BIN, ['serve', '--addr', addr, '--data-dir', dir, ...args], {
      env: { ...process.env, RTA_LOG: 'info' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const url = await new Promise((ok, fail) => {
      let buffer = '';
      const timer = setTimeout(() => fail(new Error(`rta serve did not start: ${buffer}`)), 20000);
      child.stderr.on('data', (chunk) => {
        buffer += chunk;
        if (process.env.TEST_LOG) process.stderr.write(`[server] ${chunk}`);
        const match = buffer.match(/listening on (http:\/\/[^,\s]+)/);
        if (match) { clearTimeout(timer); ok(match[1]); }
      });
      child.on('exit', (code) => fail(new Error(`rta serve exited with ${code}: ${buffer}`)));
    });
    child.stderr.on('data', () => {});
    return new Server(child, url, dir);
  }

  constructor(child, url, dir) {
    this.child = child;
    this.url = url;
    this.dir = dir;
  }

  get addr() {
    return this.url.replace('http://', '');
  }

  async ingest(events, token) {
    const response = await fetch(`${this.url}/api/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(events),
    });
    if (!response.ok) throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
    return response.json();
  }

  async metrics() {
    return (await fetch(`${this.url}/api/metrics`)).json();
  }

  /** Stops the process (SIGTERM) and keeps the data directory. */
  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((ok) => this.child.on('exit', ok));
    this.child.kill('SIGTERM');
    await exited;
  }

  async dispose() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sales(n, extra = {}) {
  return Array.from({ length: n }, (_, i) => ({
    type: 'sales',
    source: 'web-app',
    values: { amount: 10 + (i % 7) * 5, units: 1 + (i % 3), region: ['North America', 'Europe', 'Asia Pacific'][i % 3] },
    ...extra,
  }));
}

export function users(n) {
  return Array.from({ length: n }, (_, i) => ({
    type: 'users',
    source: 'auth',
    values: { active: 900 + i, new: 10 + (i % 5), region: ['Europe', 'Latin America'][i % 2] },
  }));
}
