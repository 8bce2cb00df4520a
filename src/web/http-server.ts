/*
 * The HTTP server an Express app runs in, made with request and response classes whose prototypes
 * are already the app's (app.request, app.response). Express gives every request its prototypes
 * with Object.setPrototypeOf (express/lib/application.js, app.handle); on an object V8 has already
 * shaped, that costs more than the call: measured here, a good part of each request's objects then
 * outlived the young generation, so the old generation filled with them and V8 ran a full
 * mark-compact about every 700 requests, whose marking steps (up to 4–8 ms) landed inside
 * requests. With the classes below the call finds the prototype already in place and does nothing
 * (the approach of expressjs/express#5998). docs/benchmarks.md has the figures.
 */

import http from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';

/** http.ServerResponse as the function it is (its typings only declare the class) */
type ServerResponseFunction = (this: http.ServerResponse, req: http.IncomingMessage, options?: unknown) => void;

/**
 * A connection on which nothing has moved for this long is closed: a reader that stopped reading a
 * download (an mbox, a raw message, a CSV) held its response and the rows behind it for as long as
 * it liked, and enough of them would run the process out of memory. Nothing listkeeper serves waits
 * this long before its first byte. How many connections a client may hold is the proxy's to limit.
 */
export const STALLED_MS = 120_000;

export function expressServer(app: Express, opts: { stalledMs?: number } = {}): http.Server {
  // Old-style constructors: a class's `prototype` cannot be replaced, and Node calls these with `new`.
  function Request(this: http.IncomingMessage, socket: Socket) {
    http.IncomingMessage.call(this, socket);
  }
  Request.prototype = app.request;
  function Response(this: http.ServerResponse, req: http.IncomingMessage, options?: unknown) {
    (http.ServerResponse as unknown as ServerResponseFunction).call(this, req, options);
  }
  Response.prototype = app.response;
  const server = http.createServer({
    IncomingMessage: Request as unknown as typeof http.IncomingMessage,
    ServerResponse: Response as unknown as typeof http.ServerResponse,
  }, app);
  // With no 'timeout' listener on the server, Node destroys the socket.
  server.setTimeout(opts.stalledMs ?? STALLED_MS);
  return server;
}
