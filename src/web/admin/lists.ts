import { Router, type Request, type Response } from 'express';
import { recentAudit } from '../../db/audit.ts';
import { deletionImpact, listCounts, listRoles, type ListRole } from '../../db/list-admin.ts';
import { getListById, type ListRow } from '../../db/lists.ts';
import { ARCHIVE_POLICIES, DMARC_MITIGATIONS, POST_POLICIES, REPLY_TO_POLICIES, SUBSCRIBE_POLICIES } from '../../list-policies.ts';
import { memberCounts } from '../../db/member-admin.ts';
import { addRole, createList, deleteList, removeRole, settingsVersion, updateListSettings } from '../../core/lists.ts';
import { AppError, Conflict, InvalidInput } from '../../errors.ts';
import { normalizeEmail } from '../../mail/address.ts';
import type { WebContext } from '../context.ts';
import { requireCsrf } from '../csrf.ts';
import { render } from '../render.ts';
import { flash } from '../session.ts';
import { actor, listAccessOf, requireList, requireRecentLoginThen, requireSiteAdmin } from '../auth/guards.ts';
import { auditLines } from './audit-view.ts';
import { field, oneOf, positiveInt, query } from './form.ts';
import { changedSettings, invalidFields, readSettings, type SettingsProblem } from './settings-form.ts';
import { adminListUrl } from '../../mail/urls.ts';
import { TEMPLATE_NAMES, TEMPLATE_VARIABLES } from '../../mail/templates.ts';

// Each text's variables as the settings page lists them: "{list_name}, {list_address}, …".
const TEMPLATE_HINTS = Object.fromEntries(TEMPLATE_NAMES.map((n) => [n, TEMPLATE_VARIABLES[n].map((v) => `{${v}}`).join(', ')]));
const OPTIONS = { post: POST_POLICIES, subscribe: SUBSCRIBE_POLICIES, archive: ARCHIVE_POLICIES, replyTo: REPLY_TO_POLICIES, dmarc: DMARC_MITIGATIONS };

/** Creating lists, a list's overview, its settings, owners and moderators, deleting it. */
export function listsRouter(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/admin/lists/new', requireSiteAdmin, (req, res) => {
    render(ctx.views, req, res, 'admin/list-new.njk', { title: 'New list', options: OPTIONS, form: { post_policy: 'members', subscribe_policy: 'confirm', archive: 'public' }, mailDomain: ctx.cfg.mailDomain });
  });

  r.post('/admin/lists/new', requireSiteAdmin, requireCsrf, async (req, res) => {
    const form = {
      address: field(req, 'address', 254).toLowerCase(),
      name: field(req, 'name', 200),
      description: field(req, 'description', 1000),
      post_policy: field(req, 'post_policy'),
      subscribe_policy: field(req, 'subscribe_policy'),
      archive: field(req, 'archive'),
      owners: field(req, 'owners', 5000),
    };
    try {
      const owners = form.owners.split(/[\s,;]+/).filter(Boolean).map((o) => {
        const e = normalizeEmail(o);
        if (!e) throw new InvalidInput(`Owners: "${o}" is not an e-mail address.`);
        return e;
      });
      const list = await createList(db, {
        address: form.address,
        name: form.name,
        description: form.description,
        postPolicy: oneOf('Who may post', form.post_policy, POST_POLICIES),
        subscribePolicy: oneOf('Subscription', form.subscribe_policy, SUBSCRIBE_POLICIES),
        archive: oneOf('Archive', form.archive, ARCHIVE_POLICIES),
        owners,
      }, { actor: actor(req), mailDomain: ctx.cfg.mailDomain });
      flash(ctx, res, `List ${list.address} created.`);
      res.redirect(303, adminListUrl(list.address, 'settings'));
    } catch (err) {
      if (!(err instanceof InvalidInput || err instanceof Conflict)) throw err;
      render(ctx.views, req, res, 'admin/list-new.njk', { title: 'New list', options: OPTIONS, form, error: err.message, mailDomain: ctx.cfg.mailDomain }, 400);
    }
  });

  r.get('/admin/lists/:list/', requireList(ctx, 'moderator'), async (req, res) => {
    const { list } = listAccessOf(res);
    const [counts, members, audit] = await Promise.all([listCounts(db, list.id), memberCounts(db, list.id), recentAudit(db, { listId: list.id, limit: 10 })]);
    render(ctx.views, req, res, 'admin/list.njk', { title: list.address, tab: 'overview', counts, members, audit: auditLines(audit) });
  });

  /** The settings page: `form` the values shown, with the problems of a save that was refused. */
  const settingsPage = async (req: Request, res: Response, list: ListRow, form: Record<string, unknown>, refused?: { problems: SettingsProblem[]; status: number }) =>
    render(ctx.views, req, res, 'admin/settings.njk', {
      title: `Settings · ${list.address}`, tab: 'settings', options: OPTIONS, form, roles: await listRoles(db, list.id), spamCheckOn: !!ctx.cfg.spamCheck.url, templateVariables: TEMPLATE_HINTS,
      ...(refused ? { problems: refused.problems, invalidFields: invalidFields(refused.problems) } : {}),
    }, refused?.status);

  r.get('/admin/lists/:list/settings', requireList(ctx, 'owner'), async (req, res) => {
    const { list } = listAccessOf(res);
    await settingsPage(req, res, list, formValues(list));
  });

  r.post('/admin/lists/:list/settings', requireList(ctx, 'owner'), requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    const input = readSettings(req, list);
    if (input.problems.length > 0) {
      return settingsPage(req, res, list, { ...formValues(list), ...req.body, dkim_private_key: undefined }, { problems: input.problems, status: 400 });
    }
    const changed = changedSettings(list, input);
    // A page without the field (an older one) is saved as before, unchecked.
    const version = field(req, 'version', 100) || undefined;
    try {
      await updateListSettings(db, list, input, { actor: actor(req), changed, version });
    } catch (err) {
      if (!(err instanceof AppError && err.code === 'settings_changed')) throw err;
      // Saved whole, this form would put back what the other save changed: the page shows the
      // settings as they are now, for the owner to make the change again.
      return settingsPage(req, res, list, formValues(await getListById(db, list.id)), { status: 409, problems: [
        { field: 'version', text: 'Someone changed these settings since you opened this page. The form now shows the values saved now: make your change again, then save.' },
      ] });
    }
    flash(ctx, res, Object.keys(changed).length > 0 ? `Saved: ${Object.keys(changed).join(', ')}.` : 'Nothing changed.');
    res.redirect(303, adminListUrl(list.address, 'settings'));
  });

  // A stolen owner's session that adds its thief as an owner keeps the list after the owner has
  // logged out everywhere and changed the password; removing the real owners locks them out.
  const recentLoginThenRoles = requireRecentLoginThen((_req, res) => adminListUrl(listAccessOf(res).list.address, 'settings#roles'));
  r.post('/admin/lists/:list/roles', requireList(ctx, 'owner'), requireCsrf, recentLoginThenRoles, async (req, res) => {
    const { list, role: viewerRole } = listAccessOf(res);
    const action = oneOf('action', field(req, 'action'), ['add', 'remove'] as const);
    const role = oneOf('Role', field(req, 'role'), ['owner', 'moderator'] as const) as ListRole;
    const email = normalizeEmail(field(req, 'email', 254));
    if (!email) {
      flash(ctx, res, 'Give an e-mail address.', 'error');
      return res.redirect(303, adminListUrl(list.address, 'settings#roles'));
    }
    if (action === 'add') {
      const added = await addRole(db, list, email, role, { actor: actor(req) });
      flash(ctx, res, added ? `${email} is now ${role === 'owner' ? 'an owner' : 'a moderator'} of the list.` : `${email} already was ${role === 'owner' ? 'an owner' : 'a moderator'}.`);
    } else {
      let removed: boolean;
      try {
        removed = await removeRole(db, list, email, role, { actor: actor(req), mayRemoveLastOwner: viewerRole === 'admin' });
      } catch (err) {
        if (!(err instanceof Conflict)) throw err;
        flash(ctx, res, err.message, 'error');
        return res.redirect(303, adminListUrl(list.address, 'settings#roles'));
      }
      flash(ctx, res, removed ? `${email} is no longer ${role === 'owner' ? 'an owner' : 'a moderator'}.` : 'Nothing changed.');
    }
    res.redirect(303, adminListUrl(list.address, 'settings#roles'));
  });

  r.get('/admin/lists/:list/audit', requireList(ctx, 'owner'), async (req, res) => {
    const { list } = listAccessOf(res);
    const before = positiveInt(query(req, 'before'), 0) || null;
    const rows = await recentAudit(db, { listId: list.id, beforeId: before, limit: 100 });
    render(ctx.views, req, res, 'admin/audit.njk', { title: `Audit log · ${list.address}`, tab: 'audit', entries: auditLines(rows), more: rows.length === 100 ? rows[rows.length - 1].id : null, base: adminListUrl(list.address, 'audit') });
  });

  r.get('/admin/lists/:list/delete', requireList(ctx, 'admin'), async (req, res) => {
    const { list } = listAccessOf(res);
    render(ctx.views, req, res, 'admin/list-delete.njk', { title: `Delete ${list.address}`, tab: 'settings', impact: await deletionImpact(db, list.id) });
  });

  r.post('/admin/lists/:list/delete', requireList(ctx, 'admin'), requireCsrf, async (req, res) => {
    const { list } = listAccessOf(res);
    if (field(req, 'confirm', 254).toLowerCase() !== list.address) {
      return render(ctx.views, req, res, 'admin/list-delete.njk', { title: `Delete ${list.address}`, tab: 'settings', impact: await deletionImpact(db, list.id), error: `Type ${list.address} to confirm.` }, 400);
    }
    await deleteList(db, list, { actor: actor(req) });
    flash(ctx, res, `List ${list.address} deleted.`);
    res.redirect(303, '/admin/');
  });

  return r;
}

function formValues(list: ListRow) {
  return {
    ...list,
    max_message_kb: Math.round(list.max_message_size / 1024),
    digest_size_kb: Math.round(list.digest_size_threshold / 1024),
    dkim_private_key: undefined,
    has_dkim_key: !!list.dkim_private_key,
    version: settingsVersion(list),
  };
}
