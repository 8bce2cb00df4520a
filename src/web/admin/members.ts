import { Router, type Request } from 'express';
import { recordAudit } from '../../db/audit.ts';
import { findMember } from '../../db/members.ts';
import { memberBounces } from '../../db/bounces.ts';
import { memberAudit, memberBatch, memberCounts, searchMembers, type MemberFilter } from '../../db/member-admin.ts';
import { addMembers, capRefusal, changeMembers, inviteMembers } from '../../core/members.ts';
import { parseResumeDate, resumeDay } from '../../core/vacation.ts';
import { InvalidInput, NotFound } from '../../errors.ts';
import { DELIVERY_MODES, MEMBER_STATUSES, type DeliveryMode } from '../../list-policies.ts';
import { normalizeEmail } from '../../mail/address.ts';
import { BOUNCE_PROBE_DAYS } from '../../mail/bounce-rules.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList } from '../auth/guards.ts';
import { field, fields, oneOf, optionalOneOf, positiveInt, query } from './form.ts';
import { csvCell, parseMemberLines } from './member-import.ts';
import { multipartForm, utf8OrNull } from './multipart.ts';
import { confirmPage } from './confirm.ts';
import { adminListUrl } from '../../mail/urls.ts';
import { drained } from '../../writable.ts';

const PAGE_SIZE = 50;

/** A list's members: search, filters, pages; add (one, pasted, CSV), bulk changes, export, details. */
export function membersRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;
  const owner = requireList(ctx, 'owner');

  const filterOf = (req: Request): MemberFilter => ({
    q: query(req, 'q', 200) || null,
    mode: optionalOneOf(query(req, 'mode'), DELIVERY_MODES),
    status: optionalOneOf(query(req, 'status'), MEMBER_STATUSES),
  });

  r.get('/admin/lists/:list/members', owner, async (req, res) => {
    const { list } = listAccessOf(res);
    const filter = filterOf(req);
    const page = positiveInt(query(req, 'page'), 1);
    const [{ rows, total }, counts] = await Promise.all([
      searchMembers(db, list.id, filter, PAGE_SIZE, (page - 1) * PAGE_SIZE),
      memberCounts(db, list.id),
    ]);
    const params = new URLSearchParams(Object.entries({ q: filter.q ?? '', mode: filter.mode ?? '', status: filter.status ?? '' }).filter(([, v]) => v));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const pageUrl = (p: number) => `?${new URLSearchParams([...params, ['page', String(p)]])}`;
    render(ctx.views, req, res, 'admin/members.njk', {
      title: `Members · ${list.address}`, tab: 'members', members: rows, total, counts, filter, modes: DELIVERY_MODES, statuses: MEMBER_STATUSES,
      page, pages, prev: page > 1 ? pageUrl(page - 1) : null, next: page < pages ? pageUrl(page + 1) : null,
      exportUrl: `${adminListUrl(list.address, 'members.csv')}${params.size ? `?${params}` : ''}`,
      back: req.originalUrl,
    });
  });

  // Streams in pages of 1,000 so a list of any size exports in constant memory.
  r.get('/admin/lists/:list/members.csv', owner, async (req, res) => {
    const { list } = listAccessOf(res);
    const filter = filterOf(req);
    res.type('text/csv; charset=utf-8');
    res.attachment(`${list.local_part}-members.csv`);
    res.write('email,name,mode,status,bounce_score,subscribed_at\r\n');
    let after = '';
    for (;;) {
      const batch = await memberBatch(db, list.id, filter, after, 1000);
      if (batch.length === 0) break;
      const chunk = batch.map((m) => [m.email, m.name, m.mode, m.status, m.bounce_score, m.created_at].map(csvCell).join(',')).join('\r\n');
      if (!res.write(`${chunk}\r\n`)) await drained(res);
      if (res.destroyed) break; // cancelled, or its reader stalled: what was sent is still audited
      after = batch[batch.length - 1].email;
    }
    res.end();
    await recordAudit(db, { actor: actor(req), action: 'member.export', list, detail: { ...filter } });
  });

  r.post('/admin/lists/:list/members/add', owner, ...multipartForm(), requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const mode = oneOf('Delivery', field(req, 'mode') || 'each', DELIVERY_MODES);
    const invite = field(req, 'invite') === '1';
    let text = field(req, 'addresses', 2_000_000);
    const single = field(req, 'email', 254);
    if (single) text = `${csvCell(single)},${csvCell(field(req, 'name', 200))}\n${text}`;
    for (const f of req.files ?? []) if (f.field === 'csv') text += `\n${csvText(f.content)}`;
    const { entries, problems } = parseMemberLines(text);
    const outcomes: Record<string, string[]> = { added: [], reactivated: [], updated: [], unchanged: [], invited: [] };
    const cap = { perDay: ctx.cfg.ownerAddsPerDay };
    let limited: string | null = null;
    let refused: string[];
    if (invite) {
      // A confirmation request like the web form's: the address must agree before it is added.
      const r = await inviteMembers(db, list, entries, { actor: actor(req), mode, settings: ctx.cfg, cap });
      outcomes.invited.push(...r.invited.map((e) => e.email));
      if (r.refused.length > 0 && r.cap) limited = capRefusal(list, { taken: r.invited.length, added: r.invited.length, refused: r.refused, cap: r.cap, invite: true });
      refused = r.refused.map((e) => e.email);
    } else {
      const r = await addMembers(db, list, entries, { actor: actor(req), mode, settings: ctx.cfg, cap });
      for (const { email, outcome } of r.done) outcomes[outcome].push(email);
      const newly = outcomes.added.length + outcomes.reactivated.length;
      if (r.refused.length > 0 && r.cap) limited = capRefusal(list, { taken: r.done.length, added: newly, refused: r.refused, cap: r.cap });
      refused = r.refused.map((e) => e.email);
    }
    // The allowed first part is kept (committed); the refused addresses are listed to be sent again.
    const status = limited ? 429 : problems.length > 0 && entries.length === 0 ? 400 : 200;
    render(ctx.views, req, res, 'admin/members-added.njk', { title: `Members added · ${list.address}`, tab: 'members', outcomes, problems, invite, limited, refused }, status);
  });

  r.post('/admin/lists/:list/members/bulk', owner, requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    // The ticked rows' addresses as stored: canonical, or (from a release before sql/0072) with a
    // domain that is no valid A-label, which the address-spellings job leaves as it is and which
    // must stay removable. Only rows that match exactly are changed.
    const emails = [...new Set(fields(req, 'emails').map((e) => normalizeEmail(e) ?? asStored(e)).filter((e): e is string => !!e))];
    const action = oneOf('Action', field(req, 'action'), ['remove', 'reenable', 'mode-each', 'mode-digest', 'mode-nomail', 'pause'] as const);
    const back = safeBack(req, list.address);
    // A vacation: nomail until the day given, checked before anything else is looked at.
    const until = action === 'pause' ? parseResumeDate(field(req, 'until')) : null;
    if (emails.length === 0) {
      flash(ctx, res, 'Tick at least one member first.', 'error');
      return res.redirect(303, back);
    }
    if (action === 'remove' && field(req, 'confirm') !== '1') {
      return confirmPage(ctx, req, res, {
        title: `Confirm · ${list.address}`, tab: 'members', heading: `Remove ${emails.length === 1 ? emails[0] : `${emails.length} members`}?`,
        consequence: `They stop getting mail from ${list.address} at once and are not told. Adding them again later is possible.`,
        items: emails.slice(0, 100), count: emails.length, more: Math.max(0, emails.length - 100), button: 'Remove',
        action: adminListUrl(list.address, 'members/bulk'), cancel: back,
        hidden: [['action', 'remove'], ['back', back], ...emails.map((e) => ['emails', e] as [string, string])],
      });
    }
    const change = action === 'remove' || action === 'reenable' ? action : until ? { mode: 'nomail' as const, until } : { mode: action.slice(5) as DeliveryMode };
    const changed = (await changeMembers(db, list, emails, change, { actor: actor(req) })).filter(Boolean).length;
    const verb = action === 'remove' ? 'removed' : action === 'reenable' ? 're-enabled' : until ? `paused until ${resumeDay(until)}` : `switched to ${action.slice(5)}`;
    flash(ctx, res, `${changed} of ${emails.length} member${emails.length === 1 ? '' : 's'} ${verb}.`);
    res.redirect(303, back);
  });

  r.get('/admin/lists/:list/members/:email', owner, async (req, res) => {
    const { list } = listAccessOf(res);
    const member = await findMember(db, list.id, String(req.params.email).toLowerCase());
    if (!member) throw new NotFound(`${req.params.email} is not a member of ${list.address}.`);
    const [bounces, audit] = await Promise.all([memberBounces(db, member.id), memberAudit(db, list.id, member.email)]);
    render(ctx.views, req, res, 'admin/member.njk', { title: `${member.email} · ${list.address}`, tab: 'members', member, untilDay: member.nomail_until ? resumeDay(member.nomail_until) : '', tomorrow: resumeDay(new Date(Date.now() + 86_400_000)), bounces, audit, modes: DELIVERY_MODES, probeDays: BOUNCE_PROBE_DAYS });
  });

  return r;
}

/** Back to the members page the form came from (keeping its filters), never elsewhere. */
function safeBack(req: Request, address: string): string {
  const base = adminListUrl(address, 'members');
  const back = field(req, 'back', 1000);
  return back.startsWith(`${base}?`) || back.startsWith(`${base}/`) || back === base ? back : base;
}

/** An uploaded CSV file's text (a byte order mark dropped); one that is not UTF-8 is refused, not stored with U+FFFD. */
function csvText(bytes: Buffer): string {
  const t = utf8OrNull(bytes);
  if (t === null) throw new InvalidInput('The CSV file is not UTF-8 text. Save it as UTF-8 (in a spreadsheet, "CSV UTF-8") and send it again.', 'bad_csv');
  return t;
}

/** A ticked address normalizeEmail refuses, as an old row may hold it: lower case, with an '@'; else null. */
function asStored(value: string): string | null {
  const v = value.trim().toLowerCase();
  return v.includes('@') && v.length <= 254 ? v : null;
}
