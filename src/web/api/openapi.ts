/*
 * The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json. Its schemas are JSON
 * Schema 2020-12; test/api.test.ts checks every response its tests receive against them, so a
 * change of shape that is not made here too fails the suite.
 */

import { LIST_SETTINGS } from '../../core/list-settings.ts';
import { API_SCOPES } from '../../db/api-tokens.ts';
import { HIDE_REASONS } from '../../core/hidden-messages.ts';
import { ARCHIVE_POLICIES, DELIVERY_MODES, MEMBER_STATUSES, POST_POLICIES, SUBSCRIBE_POLICIES } from '../../list-policies.ts';
import { MAX_DAYS } from '../../days.ts';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (type: string, extra: Schema = {}): Schema => ({ type: [type, 'null'], ...extra });
const dateTime: Schema = { type: 'string', format: 'date-time' };
const object = (properties: Record<string, Schema>, required = Object.keys(properties)): Schema => ({ type: 'object', properties, required, additionalProperties: false });

// Settings `list set` takes appear in a list by the same names (core/list-summary.ts).
const SHOWN_SETTINGS = Object.entries(LIST_SETTINGS).filter(([name, s]) => !s.secret && !['name', 'description', 'post_policy', 'subscribe_policy', 'archive'].includes(name)).map(([name]) => name);

const schemas: Record<string, Schema> = {
  Error: object({ error: { type: 'string', description: 'a stable code, e.g. invalid_input, invalid_token, insufficient_scope, no_such_list' }, detail: { type: 'string' } }),
  List: object({
    address: { type: 'string' }, name: { type: 'string' }, description: { type: 'string' },
    post_policy: { enum: [...POST_POLICIES] }, subscribe_policy: { enum: [...SUBSCRIBE_POLICIES] }, archive: { enum: [...ARCHIVE_POLICIES] },
    owners: { type: 'array', items: { type: 'string' } },
    ...Object.fromEntries(SHOWN_SETTINGS.map((name) => [name, { description: `the setting \`${name}\` (docs/command-line.md, list set)` }])),
    dkim_key: { type: 'boolean', description: 'whether the list has a DKIM private key (the key itself is never shown)' },
    members: { type: 'integer' }, messages: { type: 'integer' }, last_activity: nullable('string', { format: 'date-time' }), created_at: dateTime,
  }),
  ListDeleted: object({ address: { type: 'string' }, deleted: { const: true }, members: { type: 'integer' }, messages: { type: 'integer' }, only_here: { type: 'integer' }, roles: { type: 'integer' } }),
  Member: object({
    email: { type: 'string' }, name: nullable('string'), mode: { enum: [...DELIVERY_MODES] }, status: { enum: [...MEMBER_STATUSES] }, bounce_score: { type: 'number' },
    nomail_until: { type: 'string', format: 'date', description: 'only when delivery is paused until that day' },
  }, ['email', 'name', 'mode', 'status', 'bounce_score']),
  AddResult: {
    oneOf: [
      object({ email: { type: 'string' }, name: nullable('string'), result: { enum: ['added', 'reactivated', 'updated', 'unchanged', 'refused'], description: 'refused: past OWNER_ADDS_PER_DAY, with the answer 429' } }),
      object({ input: { type: 'string' }, result: { const: 'invalid' }, error: { type: 'string' } }),
    ],
  },
  AddLimited: object({
    error: { const: 'owner_add_limit' }, detail: { type: 'string', description: 'how many were taken, how many refused, and from when more can be added' },
    per_day: { type: 'integer', description: 'OWNER_ADDS_PER_DAY' }, taken: { type: 'integer', description: 'the first entries, done (the rest is refused, not tried)' },
    added: { type: 'integer', description: 'of those, the addresses added or subscribed again' }, refused: { type: 'integer' },
    retry_at: { ...dateTime, description: 'when more can be added (also Retry-After, in seconds)' },
    results: { type: 'array', items: ref('AddResult'), description: 'one per entry, as the 200 answer' },
  }),
  MemberRemoved: object({ email: { type: 'string' }, result: { enum: ['unsubscribed', 'unchanged'] } }),
  Held: object({ id: { type: 'integer' }, message_id: { type: 'string' }, from: { type: 'string' }, subject: { type: 'string' }, reason: { type: 'string' }, received_at: dateTime }),
  HeldDetail: object({
    id: { type: 'integer' }, message_id: { type: 'string' }, from: { type: 'string' }, subject: { type: 'string' }, reason: { type: 'string' }, received_at: dateTime,
    state: { enum: ['held', 'approved', 'rejected', 'discarded'] }, decided_at: nullable('string', { format: 'date-time' }), decided_by: nullable('string'), decision_reason: nullable('string'),
  }),
  Rule: object({ pattern: { type: 'string' }, kind: { enum: ['allow', 'ban'] }, expires_at: nullable('string', { format: 'date-time' }), created_by: nullable('string'), created_at: dateTime }),
  RuleSet: object({ pattern: { type: 'string' }, kind: { enum: ['allow', 'ban'] }, expires_at: nullable('string', { format: 'date-time' }) }),
  RuleRemoved: object({ pattern: { type: 'string' }, removed: { const: true } }),
  Hidden: object({ message_id: { type: 'string' }, hidden: { const: true }, reason: { enum: [...HIDE_REASONS] }, note: nullable('string') }),
  Unhidden: object({ message_id: { type: 'string' }, hidden: { const: false }, changed: { type: 'boolean', description: 'false when the message was not hidden (nothing is audited then)' } }),
  Queue: object({
    counts: object({ queued: { type: 'integer' }, sending: { type: 'integer' }, sent: { type: 'integer' }, failed: { type: 'integer' } }),
    deferred: { type: 'integer', description: 'queued rows waiting for a retry' },
    cancelled: { type: 'integer', description: 'copies not sent because nobody should get them any more (the member left or paused, the post was hidden)' },
    oldest: {
      oneOf: [{ type: 'null' }, object({ id: { type: 'integer' }, recipient: { type: 'string' }, kind: { enum: ['post', 'digest', 'notice'] }, created_at: dateTime, run_at: dateTime, attempts: { type: 'integer' }, last_error: nullable('string') })],
    },
    oldestSeconds: { type: 'number', description: "how long the oldest has waited, by the database's clock (0 when nothing waits)" },
    workers: { type: 'array', items: object({ name: { type: 'string' }, host: { type: 'string' }, pid: { type: 'integer' }, started_at: dateTime, heartbeat_at: dateTime, stale: { type: 'boolean' } }) },
    conversions: {
      type: 'array', description: 'background conversion jobs (docs/operations.md, Conversions in the background)',
      items: object({
        name: { type: 'string' }, last_key: { type: 'number' }, rows_done: { type: 'number' }, rows_changed: { type: 'number' }, total_estimate: nullable('number'),
        started_at: nullable('string', { format: 'date-time' }), done_at: nullable('string', { format: 'date-time' }), locked_by: nullable('string'),
        locked_at: nullable('string', { format: 'date-time' }), error: nullable('string'), error_at: nullable('string', { format: 'date-time' }),
        rows_skipped: { type: 'number', description: 'rows skipped: each failed alone, not transiently' },
        last_skipped: {
          description: 'the last row skipped, with its error; null when none was',
          oneOf: [{ type: 'null' }, object({ key: { type: 'number' }, error: { type: 'string' }, skipped_at: dateTime })],
        },
        idle_seconds: nullable('number', { description: "seconds since its last batch, by the database's clock; null before its first" }),
      }),
    },
    purges: object({
      url: nullable('string', { description: 'PURGE_URL, its password as ***; null when unset' }), keys: { type: 'integer' }, rows: { type: 'integer' },
      oldestSeconds: { type: 'number' }, retrying: { type: 'integer' },
      oldest: { oneOf: [{ type: 'null' }, object({ key: { type: 'string' }, queued_at: dateTime, run_at: dateTime, attempts: { type: 'integer' }, last_error: nullable('string') })] },
    }),
  }),
  AuditEntry: object({
    id: { type: 'integer' }, at: dateTime, actor: { type: 'string', description: 'an account\'s address, cli:USER, or api:NAME#ID for a token' },
    action: { type: 'string' }, list_id: nullable('integer'), list_address: nullable('string'), target: nullable('string'), detail: { type: 'object' },
  }),
  ListCreate: {
    type: 'object', required: ['address'], additionalProperties: false,
    properties: {
      address: { type: 'string', description: 'without @ the list takes MAIL_DOMAIN' }, name: { type: 'string' }, description: { type: 'string' },
      owners: { type: 'array', items: { type: 'string' } },
      post_policy: { enum: [...POST_POLICIES], default: 'members' }, subscribe_policy: { enum: [...SUBSCRIBE_POLICIES], default: 'confirm' }, archive: { enum: [...ARCHIVE_POLICIES], default: 'public' },
    },
  },
  ListSettings: {
    type: 'object', minProperties: 1, additionalProperties: false, description: 'settings by the names `listkeeper list set` takes; null clears an optional one, true/false are yes/no',
    properties: Object.fromEntries(Object.keys(LIST_SETTINGS).map((name) => [name, { type: ['string', 'number', 'boolean', 'null'] }])),
  },
  MemberEntry: {
    oneOf: [
      { type: 'string', description: '"EMAIL" or "Name <EMAIL>"' },
      { type: 'object', required: ['email'], additionalProperties: false, properties: { email: { type: 'string' }, name: nullable('string'), mode: { enum: [...DELIVERY_MODES] } } },
    ],
  },
  MemberAdd: {
    type: 'object', additionalProperties: false, description: 'one member (email, name, mode) or many (members); until (YYYY-MM-DD) goes with mode nomail',
    properties: { email: { type: 'string' }, name: nullable('string'), mode: { enum: [...DELIVERY_MODES], default: 'each' }, until: { type: 'string', format: 'date' }, members: { type: 'array', maxItems: 10_000, items: ref('MemberEntry') } },
  },
  MemberChange: {
    type: 'object', additionalProperties: false, description: 'a mode (with until for a pause of nomail), or status "active" to re-enable delivery',
    properties: { mode: { enum: [...DELIVERY_MODES] }, until: { type: 'string', format: 'date' }, status: { const: 'active' } },
  },
  Decision: { type: 'object', additionalProperties: false, properties: { reason: { type: 'string', description: 'mailed to the sender on reject' } } },
  RuleCreate: { type: 'object', required: ['pattern', 'kind'], additionalProperties: false, properties: { pattern: { type: 'string', description: 'an address or @domain' }, kind: { enum: ['allow', 'ban'] }, days: { type: 'integer', minimum: 1, maximum: MAX_DAYS } } },
  Hide: { type: 'object', required: ['message_id', 'reason'], additionalProperties: false, properties: { message_id: { type: 'string' }, reason: { enum: [...HIDE_REASONS] }, note: { type: 'string' } } },
  Unhide: { type: 'object', required: ['message_id'], additionalProperties: false, properties: { message_id: { type: 'string' } } },
};

const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: ref('Error') } } });
const ERRORS: Record<string, string> = {
  400: 'invalid input (a field, JSON that does not parse, a cursor)', 401: 'no token, or one that is wrong, revoked or lapsed, or whose maker is no longer a site administrator', 403: 'the token\'s scope does not allow this',
  404: 'no such list, member, held message, rule or message', 429: 'too many requests from this token, or too many wrong tokens from this address',
};
const WRITE_ERRORS: Record<string, string> = { 409: 'conflicts with the current state (already decided, already exists)', 413: 'the body is over 1 MB', 415: 'the body is not JSON' };

const param = (name: string, description: string, where: 'path' | 'query' = 'path', schema: Schema = { type: 'string' }) => ({ name, in: where, required: where === 'path', description, schema });
const LIST = param('list', 'the list\'s address, or its local part when unique');
const PAGE = [param('limit', 'items per page, 1 to 500 (default 100)', 'query', { type: 'integer', minimum: 1, maximum: 500 }), param('cursor', 'where the page starts: the next page\'s URL in the Link header carries it', 'query')];

// A collection answers as the command line's --json does, an array; the next page's URL is in the
// Link header (RFC 8288), as GitHub's API gives it, so the body's shape is the CLI's.
const LINK_HEADER = { Link: { description: 'the next page: `<URL>; rel="next"`; absent on the last page', schema: { type: 'string' } } };

function op(o: { summary: string; scope: (typeof API_SCOPES)[number]; params?: unknown[]; body?: string; status?: number; response: string; paged?: boolean; more?: Record<string, unknown> }) {
  const errors = o.body || o.scope !== 'read' ? { ...ERRORS, ...WRITE_ERRORS } : ERRORS;
  return {
    summary: o.summary,
    'x-scope': o.scope,
    description: `Needs a token with the ${o.scope} scope${o.scope === 'admin' ? '' : ' or wider'}.`,
    parameters: o.params ?? [],
    ...(o.body ? { requestBody: { required: o.body !== 'Decision', content: { 'application/json': { schema: ref(o.body) } } } } : {}),
    responses: {
      [o.status ?? 200]: { description: o.paged ? 'one page, in order; the Link header names the next' : 'done', ...(o.paged ? { headers: LINK_HEADER } : {}), content: { 'application/json': { schema: o.response.startsWith('[') ? { type: 'array', items: ref(o.response.slice(1, -1)) } : ref(o.response) } } },
      ...Object.fromEntries(Object.entries(errors).map(([status, d]) => [status, errorResponse(d)])),
      ...o.more,
    },
  };
}

export function openApiDocument() {
  return {
    openapi: '3.1.0',
    info: { title: 'listkeeper REST API', version: '1', description: 'Lists, members, moderation, sender rules, archive hiding, the outbound queue and the audit log. Resources have the shapes of the command line\'s --json output. See docs/api.md.' },
    servers: [{ url: '/api/v1' }],
    security: [{ bearerAuth: [] }],
    components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'a token from the panel (/admin/tokens) or `listkeeper token create`' } }, schemas },
    paths: {
      '/lists': {
        get: op({ summary: 'all lists, by address', scope: 'read', params: PAGE, response: '[List]', paged: true }),
        post: op({ summary: 'create a list', scope: 'admin', body: 'ListCreate', status: 201, response: 'List' }),
      },
      '/lists/{list}': {
        get: op({ summary: 'one list with its settings', scope: 'read', params: [LIST], response: 'List' }),
        patch: op({ summary: 'change settings (as `list set`)', scope: 'admin', params: [LIST], body: 'ListSettings', response: 'List' }),
        delete: op({ summary: 'delete a list for good', scope: 'admin', params: [LIST], response: 'ListDeleted' }),
      },
      '/lists/{list}/members': {
        get: op({
          summary: 'the roster, by address', scope: 'read', response: '[Member]', paged: true,
          params: [LIST, ...PAGE, param('status', 'only this status', 'query', { enum: [...MEMBER_STATUSES] }), param('mode', 'only this mode', 'query', { enum: [...DELIVERY_MODES] }), param('q', 'part of the address or name', 'query')],
        }),
        post: op({
          summary: 'add members at once (no confirmation)', scope: 'admin', params: [LIST], body: 'MemberAdd', response: '[AddResult]',
          more: { 429: { description: `${ERRORS[429]}; or past OWNER_ADDS_PER_DAY new addresses to the list today: the first entries are added, the rest refused (AddLimited)`, content: { 'application/json': { schema: { oneOf: [ref('Error'), ref('AddLimited')] } } } } },
        }),
      },
      '/lists/{list}/members/{email}': {
        patch: op({ summary: 'change a member\'s mode, or re-enable delivery', scope: 'admin', params: [LIST, param('email', 'the member\'s address')], body: 'MemberChange', response: 'Member' }),
        delete: op({ summary: 'remove a member', scope: 'admin', params: [LIST, param('email', 'the member\'s address')], response: 'MemberRemoved' }),
      },
      '/lists/{list}/held': { get: op({ summary: 'posts awaiting moderation, oldest first', scope: 'read', params: [LIST, ...PAGE], response: '[Held]', paged: true }) },
      '/lists/{list}/held/{id}': { get: op({ summary: 'one held post and its state', scope: 'read', params: [LIST, param('id', 'the held post\'s id', 'path', { type: 'integer' })], response: 'HeldDetail' }) },
      '/lists/{list}/held/{id}/{action}': {
        post: op({
          summary: 'approve (archived and sent, as an accepted post), reject (the sender is told the reason) or discard', scope: 'moderate', body: 'Decision', response: 'HeldDetail',
          params: [LIST, param('id', 'the held post\'s id', 'path', { type: 'integer' }), param('action', 'the decision', 'path', { enum: ['approve', 'reject', 'discard'] })],
        }),
      },
      '/lists/{list}/rules': {
        get: op({ summary: 'sender rules, by pattern', scope: 'read', params: [LIST, ...PAGE], response: '[Rule]', paged: true }),
        post: op({ summary: 'always accept (allow) or silently drop (ban) an address or @domain', scope: 'moderate', params: [LIST], body: 'RuleCreate', response: 'RuleSet' }),
      },
      '/lists/{list}/rules/{pattern}': { delete: op({ summary: 'remove a sender rule', scope: 'moderate', params: [LIST, param('pattern', 'an address or @domain')], response: 'RuleRemoved' }) },
      '/lists/{list}/messages/hide': { post: op({ summary: 'hide an archived message from the list\'s readers', scope: 'moderate', params: [LIST], body: 'Hide', response: 'Hidden' }) },
      '/lists/{list}/messages/unhide': { post: op({ summary: 'show a hidden message again', scope: 'moderate', params: [LIST], body: 'Unhide', response: 'Unhidden' }) },
      '/queue': { get: op({ summary: 'the outbound queue: counts by state, the oldest waiting, the workers, background conversions, purges waiting', scope: 'read', response: 'Queue' }) },
      '/audit': {
        get: op({
          summary: 'the audit log, newest first', scope: 'read', response: '[AuditEntry]', paged: true,
          params: [...PAGE, param('list', 'only this list\'s entries', 'query'), param('action', 'only actions starting with this, e.g. held.', 'query')],
        }),
      },
    },
  };
}
