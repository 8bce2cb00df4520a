/*
 * A reader who asks for a page and then stops reading it: the download keeps its slot while the
 * server waits on the socket (test/download-slots*.test.ts).
 */

import net from 'node:net';

export interface Stalled {
  status: number;
  socket: net.Socket;
  /** resolves when the connection has closed (whoever closed it) */
  closed: Promise<void>;
}

/** A reader who sends a GET as `ip` (X-Forwarded-For, from loopback: believed), reads its first bytes and then nothing. */
export async function stall(base: string, path: string, ip: string): Promise<Stalled> {
  const { port } = new URL(base);
  const socket = net.connect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${ip}\r\n\r\n`);
  const first = await new Promise<Buffer>((resolve, reject) => {
    socket.once('data', (d: Buffer) => {
      socket.pause();
      resolve(d);
    });
    void closed.then(() => reject(new Error(`${path}: closed before any answer`)));
  });
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(first.toString('latin1'))![1]), socket, closed };
}
