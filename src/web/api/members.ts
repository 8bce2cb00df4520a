/*
 * /api/v1/lists/LIST/members: the roster in the shape of `listkeeper members --json`, and the
 * administrator's changes (core/members.ts, as `subscribe`, `unsubscribe` and the panel make them).
 */

import { Router } from 'express';
import { addMembers, capRefusal, changeMembers, type MemberEntry } from '../../core/members.ts';
import { parseResumeDate, resumeDay } from '../../core/vacation.ts';
import { memberBatch, type MemberFilter } from '../../db/member-admin.ts';
import { findMember, type MemberRow } from '../../db/members.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import { DELIVERY_MODES, MEMBER_STATUSES, isOneOf, type DeliveryMode } from '../../list-policies.ts';
import { memberName, normalizeEmail, parseMailbox } from '../../mail/address.ts';
import type { WebContext } from '../context.ts';
import { apiActor, need } from './auth.ts';
import { body, choice, pageParams, pathList, sendPage, str } from './input.ts';

/** The most entries one request may add (a bigger import is several requests). */
const MAX_ENTRIES = 10_000;

/** `members --json`'s shape: nomail_until only for a member whose nomail has an end date. */
function memberJson(m: { email: string; name: string | null; mode: DeliveryMode; status: string; bounce_score: number; nomail_until: string | null }) {
  return { email: m.email, name: m.name, mode: m.mode, status: m.status, bounce_score: m.bounce_score, ...(m.nomail_until ? { nomail_until: m.nomail_until } : {}) };
}

function rowJson(m: MemberRow) {
  return memberJson({ ...m, nomail_until: m.nomail_until ? resumeDay(m.nomail_until) : null });
}

export function membersApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/lists/:list/members', need('read'), async (req, res) => {
    const list = await pathList(ctx, req);
    const page = pageParams(req);
    const q = req.query as Record<string, unknown>;
    const filter: MemberFilter = {
      q: typeof q.q === 'string' ? q.q.slice(0, 300) : null,
      status: typeof q.status === 'string' ? oneOf('status', q.status, MEMBER_STATUSES) : null,
      mode: typeof q.mode === 'string' ? oneOf('mode', q.mode, DELIVERY_MODES) : null,
    };
    // In address order from after the cursor: one more than asked tells whether a page follows.
    const rows = await memberBatch(db, list.id, filter, page.cursor ?? '', page.limit + 1);
    const shown = rows.slice(0, page.limit);
    sendPage(req, res, shown.map(memberJson), rows.length > page.limit ? shown[shown.length - 1].email : null);
  });

  // One member ({email, name?, mode?}) or many ({members: [...]}, each "EMAIL", "Name <EMAIL>" or
  // an object), added at once with no confirmation, as `listkeeper subscribe` does; `until` with
  // mode nomail pauses delivery until that day. One result per entry, in order, as `subscribe --json`.
  r.post('/lists/:list/members', need('admin'), async (req, res) => {
    const list = await pathList(ctx, req);
    const b = body(req);
    const mode = choice(b, 'mode', DELIVERY_MODES, 'each');
    const untilText = str(b, 'until', { max: 40 });
    const until = untilText === undefined ? null : parseResumeDate(untilText);
    if (b.members === undefined && b.email === undefined) throw new InvalidInput('Send "email" (one member) or "members" (an array).');
    if (b.members !== undefined && !Array.isArray(b.members)) throw new InvalidInput('"members" must be an array.');
    const raw: unknown[] = Array.isArray(b.members) ? b.members : [{ email: b.email, name: b.name, mode: b.mode }];
    if (raw.length === 0) throw new InvalidInput('"members" is empty: nothing to add.');
    if (raw.length > MAX_ENTRIES) throw new InvalidInput(`At most ${MAX_ENTRIES} members per request.`);
    const given = raw.map(entry);
    const good = given.filter((g): g is { input: string; entry: MemberEntry } => 'entry' in g);
    const added = await addMembers(db, list, good.map((g) => g.entry), { actor: apiActor(req, res), mode, until, settings: ctx.cfg, cap: { perDay: ctx.cfg.ownerAddsPerDay } });
    let next = 0;
    const results = given.map((g) => ('entry' in g ? { email: g.entry.email, name: g.entry.name ?? null, result: added.done[next++]?.outcome ?? 'refused' } : { input: g.input, result: 'invalid', error: g.error }));
    if (added.refused.length === 0 || !added.cap) return void res.json(results);
    // The allowed first part is added (and committed); the rest is refused, each marked so.
    const newly = added.done.filter((d) => d.outcome === 'added' || d.outcome === 'reactivated').length;
    const detail = capRefusal(list, { taken: added.done.length, added: newly, refused: added.refused, cap: added.cap });
    res.status(429).set({ 'Cache-Control': 'no-store', 'Retry-After': String(Math.max(1, Math.ceil(added.cap.secondsLeft))) }).json({
      error: 'owner_add_limit', detail, per_day: added.cap.perDay, taken: added.done.length, added: newly, refused: added.refused.length,
      retry_at: added.cap.endsAt.toISOString(), results,
    });
  });

  // {mode, until?} sets the delivery mode (until: a vacation); {status: "active"} re-enables delivery.
  r.patch('/lists/:list/members/:email', need('admin'), async (req, res) => {
    const list = await pathList(ctx, req);
    const email = memberEmail(String(req.params.email));
    const b = body(req);
    const found = await findMember(db, list.id, email);
    if (!found || found.status === 'unsubscribed') throw new NotFound(`${email} is not a member of ${list.address}.`, 'no_such_member');
    if (b.status !== undefined) {
      if (b.status !== 'active' || b.mode !== undefined) throw new InvalidInput('"status" can only be "active" (re-enable delivery), and not together with "mode".');
      await changeMembers(db, list, [email], 'reenable', { actor: apiActor(req, res) });
    } else {
      const mode = choice(b, 'mode', DELIVERY_MODES);
      const untilText = str(b, 'until', { max: 40 });
      await changeMembers(db, list, [email], { mode, until: untilText === undefined ? null : parseResumeDate(untilText) }, { actor: apiActor(req, res) });
    }
    res.json(rowJson((await findMember(db, list.id, email))!));
  });

  r.delete('/lists/:list/members/:email', need('admin'), async (req, res) => {
    const list = await pathList(ctx, req);
    const email = memberEmail(String(req.params.email));
    const [removed] = await changeMembers(db, list, [email], 'remove', { actor: apiActor(req, res) });
    res.json({ email, result: removed ? 'unsubscribed' : 'unchanged' });
  });

  return r;
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!isOneOf(value, allowed)) throw new InvalidInput(`"${name}" must be one of ${allowed.join(', ')}.`);
  return value;
}

function memberEmail(value: string): string {
  const email = normalizeEmail(value);
  if (!email) throw new InvalidInput(`"${value.slice(0, 100)}" is not an e-mail address.`);
  return email;
}

/**
 * One entry of an add (the `i`th, from 0): "EMAIL", "Name <EMAIL>" or {email, name?, mode?};
 * refused ones say why. A name is read as the panel and `subscribe` read one (memberName: encoded
 * words decoded, one line). An entry without an address is named by position and type, never by
 * serialising what was sent (a request chooses its size and depth).
 */
function entry(v: unknown, i: number): { input: string; entry: MemberEntry } | { input: string; error: string } {
  if (typeof v === 'string') {
    const m = parseMailbox(v.slice(0, 1000));
    return m.email ? { input: v, entry: { email: m.email, name: m.name } } : { input: v, error: `"${v.slice(0, 100)}" is not an e-mail address` };
  }
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.email !== 'string') return { input: `entry ${i + 1} (an object)`, error: '"email" is missing or not a string' };
    const input = o.email;
    const email = normalizeEmail(input);
    if (!email) return { input, error: `"${input.slice(0, 100)}" is not an e-mail address` };
    if (o.name !== undefined && o.name !== null && typeof o.name !== 'string') return { input, error: '"name" must be a string' };
    if (o.mode !== undefined && o.mode !== null && !(typeof o.mode === 'string' && isOneOf(o.mode, DELIVERY_MODES))) return { input, error: `"mode" must be one of ${DELIVERY_MODES.join(', ')}` };
    return { input, entry: { email, name: typeof o.name === 'string' ? memberName(o.name) : null, mode: (o.mode as DeliveryMode | undefined) ?? null } };
  }
  return { input: `entry ${i + 1} (${Array.isArray(v) ? 'an array' : v === null ? 'null' : `a ${typeof v}`})`, error: 'an entry is "EMAIL", "Name <EMAIL>" or {"email": ..., "name": ..., "mode": ...}' };
}
