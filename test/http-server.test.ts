/*
 * The web listener's HTTP server (src/web/http-server.ts): requests and responses are made with the
 * Express app's prototypes already in place, so Express's per-request Object.setPrototypeOf does
 * nothing (what made requests' objects outlive V8's young generation), and everything Express
 * adds to them still works over a kept-alive connection.
 */

import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { expressServer } from '../src/web/http-server.ts';
import { drained } from '../src/writable.ts';

const app = express();
const server = expressServer(app);
const seen: { request: boolean; response: boolean }[] = [];
let base: string;

app.get('/echo', (req, res) => {
  res.cookie('c', 'v', { httpOnly: true });
  res.json({ q: req.query.q, ip: req.ip, path: req.path, accepts: req.accepts(['json', 'html']) });
});
app.get('/away', (_req, res) => res.redirect(302, '/echo?q=moved'));
app.get('/fails', () => {
  throw new Error('broken');
});
app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
  res.status(500).type('text').send(`handled: ${err.message}`);
});

beforeAll(async () => {
  // Runs before Express's listener: what the request looks like as Node made it.
  server.prependListener('request', (req, res) => {
    seen.push({ request: Object.getPrototypeOf(req) === app.request, response: Object.getPrototypeOf(res) === app.response });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
});

it("makes requests and responses with the app's prototypes, before Express sees them", async () => {
  seen.length = 0;
  const res = await fetch(`${base}/echo?q=x`);
  expect(res.status).toBe(200);
  expect(seen).toEqual([{ request: true, response: true }]);
  // A plain http.createServer(app) would not: Express would set them itself.
  const plain = http.createServer();
  plain.on('request', (req: http.IncomingMessage, r: http.ServerResponse) => {
    seen.push({ request: Object.getPrototypeOf(req) === app.request, response: Object.getPrototypeOf(r) === app.response });
    r.end();
  });
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  await fetch(`http://127.0.0.1:${(plain.address() as AddressInfo).port}/`).then((r) => r.text());
  await new Promise<void>((resolve) => {
    plain.close(() => resolve());
    plain.closeAllConnections();
  });
  expect(seen[1]).toEqual({ request: false, response: false });
});

it('keeps what Express adds: query, cookies, JSON, redirects, error handlers, over one kept-alive connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let connections = 0;
  const count = () => void connections++;
  server.on('connection', count);
  const get = (path: string) => new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    http.get(`${base}${path}`, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    }).on('error', reject);
  });
  try {
    const echo = await get('/echo?q=%C3%A9t%C3%A9');
    expect(echo.status).toBe(200);
    expect(JSON.parse(echo.body)).toEqual({ q: 'été', ip: '127.0.0.1', path: '/echo', accepts: 'json' });
    expect(echo.headers['set-cookie']).toEqual(['c=v; Path=/; HttpOnly']);
    const away = await get('/away');
    expect(away.status).toBe(302);
    expect(away.headers.location).toBe('/echo?q=moved');
    const fails = await get('/fails');
    expect(fails).toMatchObject({ status: 500, body: 'handled: broken' });
    const missing = await get('/nothing-here');
    expect(missing.status).toBe(404);
    expect(missing.body).toContain('Cannot GET /nothing-here');
    expect(connections).toBe(1);
  } finally {
    server.off('connection', count);
    agent.destroy();
  }
});

it('closes a connection whose reader stopped reading a download, and the download stops writing', async () => {
  const stalling = express();
  let written = 0;
  let stopped: () => void;
  const stoppedEarly = new Promise<void>((resolve) => (stopped = resolve));
  stalling.get('/big', async (_req, res) => {
    const chunk = Buffer.alloc(1 << 20, 'x');
    res.setHeader('Content-Type', 'application/octet-stream');
    for (let i = 0; i < 512; i++) {
      if (!res.write(chunk)) await drained(res);
      if (res.destroyed) return stopped();
      written++;
    }
    res.end();
  });
  const s = expressServer(stalling, { stalledMs: 300 });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((s.address() as AddressInfo).port, '127.0.0.1');
  try {
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.pause(); // reads nothing from here on
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await stoppedEarly;
    // Far less than the 512 MB it would have sent: what the kernel's buffers took before it stalled.
    expect(written).toBeLessThan(64);
    // Resumed, the client finds the connection ended by the server.
    socket.resume();
    await closed;
  } finally {
    socket.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});
