/* The crash loop's posts (test/chaos-loop.ts): who sent what to which list, and what the server answered. */

import type { Random } from './helpers/random.ts';
import { ConnectionLost, SmtpSession } from './helpers/smtp-session.ts';

export const DOMAIN = 'lists.example.org';
export const LISTS = [`chaos-a@${DOMAIN}`, `chaos-b@${DOMAIN}`];

export interface PostRecord {
  id: string;
  /** the lists named at RCPT TO; once answered, the ones whose RCPT was answered 250 */
  lists: string[];
  outcome: 'acked' | 'refused' | 'unanswered';
  code?: number;
  /** RCPT TO refusals (a 451 while the database is away) */
  rcptRefused: number[];
}

/**
 * Concurrent SMTP sessions posting until stopped or cut off by the kill: to one list, the other,
 * or both (one message, two recipients); a third are replies to earlier posts, some MIME with an
 * attachment. Every post is recorded with what the server answered.
 */
export function startLoad(port: number, rnd: Random, sessions: number, cap: number, posts: PostRecord[], seed: number, iteration: number) {
  let stopping = false;
  let n = 0;
  const client = async (c: number) => {
    let session: SmtpSession;
    try {
      session = await SmtpSession.open(port, { timeoutMs: 20_000 });
    } catch {
      return;
    }
    while (!stopping) {
      if (n >= cap) {
        // Enough for this iteration (a delayed kill must not pile up a backlog): stay connected.
        await sleep(100);
        continue;
      }
      const lists = pick(rnd, [[LISTS[0]], [LISTS[1]], LISTS, [LISTS[0]]]);
      const id = `chaos-${seed}-${iteration}-${c}-${n++}@senders.example`;
      const acked = posts.filter((p) => p.outcome === 'acked');
      const parent = acked.length && rnd.next() < 0.33 ? acked[rnd.int(0, acked.length - 1)].id : null;
      const record: PostRecord = { id, lists, outcome: 'unanswered', rcptRefused: [] };
      posts.push(record);
      try {
        const t = await session.send(`p${c}@senders.example`, lists, composePost(rnd, id, lists, parent));
        record.code = t.final.code;
        record.outcome = t.stage === 'dot' && t.final.code === 250 ? 'acked' : 'refused';
        // The 250 after DATA speaks for the recipients whose RCPT TO was answered 250, no others.
        record.rcptRefused = t.rcpt.filter((r) => r.code !== 250).map((r) => r.code);
        record.lists = lists.filter((_, k) => t.rcpt[k]?.code === 250);
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        return;
      }
      await sleep(rnd.int(20, 120));
    }
    await session.quit();
  };
  const running = Promise.all(Array.from({ length: sessions }, (_, c) => client(c)));
  return {
    async stop() {
      stopping = true;
      await running;
    },
  };
}

const WORDS = ['postgres', 'vacuum', 'index', 'replica', 'commit', 'lock', 'queue', 'thread', 'archive', 'patch', 'review', 'crash', 'restart', 'latency'];

function composePost(rnd: Random, id: string, lists: string[], parent: string | null): Buffer {
  const words = Array.from({ length: rnd.int(20, 200) }, () => pick(rnd, WORDS));
  const body = words.join(' ').replace(/(([a-z]+ ){12})/g, '$1\r\n');
  const head = [
    `From: Poster <${id.split('@')[0].replace(/^chaos-/, 'p-')}@senders.example>`,
    `To: ${lists.join(', ')}`,
    `Subject: ${parent ? 'Re: ' : ''}${pick(rnd, WORDS)} ${pick(rnd, WORDS)}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}>`,
    ...(parent ? [`In-Reply-To: <${parent}>`, `References: <${parent}>`] : []),
    'MIME-Version: 1.0',
  ];
  if (rnd.next() < 0.2) {
    const b = `b-${rnd.int(0, 1e9)}`;
    return Buffer.from([...head, `Content-Type: multipart/mixed; boundary="${b}"`, '', `--${b}`, 'Content-Type: text/plain; charset=utf-8', '', body, `--${b}`,
      'Content-Type: application/octet-stream; name="data.bin"', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename="data.bin"', '',
      Buffer.from(words.join('')).toString('base64').replace(/.{76}/g, '$&\r\n'), `--${b}--`, ''].join('\r\n'));
  }
  return Buffer.from([...head, 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n'));
}

function pick<T>(rnd: Random, items: T[]): T {
  return items[rnd.int(0, items.length - 1)];
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
