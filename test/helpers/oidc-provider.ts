/*
 * A real OpenID Connect provider (panva's oidc-provider, certified for the Basic profile) on a
 * loopback port of its own, with one confidential client whose redirect URI is listkeeper's
 * callback, and a few users. Its development interactions are the login and consent pages a
 * test drives over HTTP (signIn): any password logs in as the user named.
 *
 * The ID token carries only `sub` (the provider's default when an access token is issued too), so
 * the address and groups come from the userinfo endpoint, as with most real providers.
 */

import http from 'node:http';
import Provider from 'oidc-provider';
import type { Reply, WebClient } from './browser.ts';
import { freePort } from './rspamd.ts';

export const CLIENT_ID = 'listkeeper-test';
export const CLIENT_SECRET = 'test-client-secret-do-not-log';
export const ADMIN_GROUP = 'listkeeper-admins';

/** The provider's users: sub → claims. */
export const OIDC_USERS: Record<string, { email?: string; email_verified?: boolean; groups?: string[] }> = {
  carol: { email: 'Carol@Example.org', email_verified: true, groups: ['staff'] },
  root: { email: 'root@example.org', email_verified: true, groups: ['staff', ADMIN_GROUP] },
  eve: { email: 'eve@example.org', email_verified: false },
  nomail: {},
};

export interface RunningProvider {
  issuer: string;
  /** pauses every answer (discovery included) until release() */
  hang(): void;
  release(): void;
  stop(): Promise<void>;
}

/** A port for the provider, known before listkeeper (which needs OIDC_ISSUER) starts. */
export async function providerPort(): Promise<number> {
  return freePort();
}

export async function startProvider(port: number, redirectUri: string): Promise<RunningProvider> {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri],
      response_types: ['code'], grant_types: ['authorization_code'], token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'email', 'groups'],
    async findAccount(_ctx, sub) {
      const user = OIDC_USERS[sub];
      if (!user) return undefined;
      return { accountId: sub, claims: async () => ({ sub, ...user }) };
    },
    cookies: { keys: ['test-cookie-signing-key'] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
  });
  let hanging: Array<() => void> | null = null;
  const callback = provider.callback();
  const server = http.createServer((req, res) => {
    if (hanging) hanging.push(() => callback(req, res));
    else callback(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    issuer,
    hang: () => (hanging ??= []),
    release: () => {
      const waiting = hanging ?? [];
      hanging = null;
      for (const go of waiting) go();
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Follows a login through the provider as a browser would: from the authorization URL through its
 * login and consent pages (as `user`) to the redirect back to listkeeper, which is returned
 * unfollowed. `client` keeps the cookies of both sites (one host, two ports: a browser's jar
 * ignores ports too).
 */
export async function signIn(client: WebClient, authorizationUrl: string, user: string): Promise<string> {
  let next: string | null = authorizationUrl;
  for (let step = 0; step < 20 && next; step++) {
    const reply: Reply = await client.get(next);
    const here: string = next;
    if (reply.status >= 300 && reply.status < 400) {
      const target = new URL(reply.location!, here).href;
      if (target.includes('/login/oidc/callback')) return target;
      next = target;
      continue;
    }
    if (reply.status !== 200) throw new Error(`the provider answered ${reply.status} at ${here}:\n${reply.text.slice(0, 500)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(reply.text)?.[1];
    const prompt = /name="prompt" value="([^"]+)"/.exec(reply.text)?.[1];
    if (!action || !prompt) throw new Error(`no interaction form at ${here}:\n${reply.text.slice(0, 500)}`);
    const form: Record<string, string> = prompt === 'login' ? { prompt, login: user, password: 'any' } : { prompt };
    const posted: Reply = await client.post(new URL(action.replace(/&amp;/g, '&'), here).href, form, { csrf: false });
    if (posted.status < 300 || posted.status >= 400) throw new Error(`the provider answered ${posted.status} to the ${prompt} form:\n${posted.text.slice(0, 500)}`);
    next = new URL(posted.location!, here).href;
  }
  throw new Error('the provider never redirected back to listkeeper');
}
