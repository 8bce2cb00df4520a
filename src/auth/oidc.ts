/*
 * Logging in through an OpenID Connect provider (authorization code flow with PKCE, state and
 * nonce), by openid-client. The provider is discovered at the first login, within a deadline,
 * and again an hour later or after a failure, so that the web server starts whether or not the
 * provider answers. The login is kept by the browser between the redirect and the callback (the
 * route keeps `PendingLogin` in a short-lived HttpOnly cookie), and the callback must carry the
 * same state, and the ID token the same nonce, or nothing happens.
 *
 * What the provider tells us is the address: the `email` claim, only when `email_verified` is
 * true, both from the ID token, or from the userinfo endpoint when the token does not carry them
 * (verifiedEmail).
 */

import * as client from 'openid-client';
import { within } from '../deadline.ts';
import { Forbidden, InvalidInput, TemporaryFailure } from '../errors.ts';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  /** none: a public client (PKCE alone) */
  clientSecret?: string;
  scopes: string;
  groupsClaim: string;
  /** members of this group (in groupsClaim) are site administrators; unset: nobody is made one */
  adminGroup?: string;
  timeoutMs: number;
}

/** What the browser keeps between the redirect to the provider and the callback. */
export interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
}

/** Who the provider says logged in. admin: null when no admin group is configured. */
export interface OidcIdentity {
  subject: string;
  email: string;
  admin: boolean | null;
}

const REDISCOVER_MS = 3600 * 1000;

export class OidcLogin {
  private discovered: { at: number; config: Promise<client.Configuration> } | null = null;

  constructor(private readonly s: OidcSettings) {}

  get issuer(): string {
    return this.s.issuer;
  }

  private configuration(): Promise<client.Configuration> {
    if (this.discovered && performance.now() - this.discovered.at < REDISCOVER_MS) return this.discovered.config;
    const seconds = Math.max(1, Math.ceil(this.s.timeoutMs / 1000));
    const issuer = new URL(this.s.issuer);
    const config = within(
      client.discovery(
        issuer, this.s.clientId, this.s.clientSecret ? { client_secret: this.s.clientSecret } : undefined,
        this.s.clientSecret ? client.ClientSecretBasic(this.s.clientSecret) : client.None(),
        // http only for a loopback issuer (config.ts refuses any other), as in tests and local set-ups.
        { timeout: seconds, execute: issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [] },
      ),
      this.s.timeoutMs,
      'the OpenID provider (OIDC_ISSUER)',
    );
    const entry = { at: performance.now(), config };
    this.discovered = entry;
    config.catch(() => {
      if (this.discovered === entry) this.discovered = null;
    });
    return config;
  }

  /** The provider's authorization URL, and what the callback will need. */
  async start(redirectUri: string): Promise<{ url: string; pending: PendingLogin }> {
    const config = await this.unavailableAs503(this.configuration());
    const pending: PendingLogin = { state: client.randomState(), nonce: client.randomNonce(), verifier: client.randomPKCECodeVerifier() };
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: this.s.scopes,
      state: pending.state,
      nonce: pending.nonce,
      code_challenge: await client.calculatePKCECodeChallenge(pending.verifier),
      code_challenge_method: 'S256',
    });
    return { url: url.href, pending };
  }

  /**
   * Checks the callback (state, then the code exchanged with the PKCE verifier, the ID token's
   * signature, audience and nonce) and returns the identity. InvalidInput for a callback that does
   * not match the login it claims to finish (redirectUri: PUBLIC_URL + /login/oidc/callback, where
   * the provider sent the browser), Forbidden when the provider refused or gave no
   * verified address, TemporaryFailure when it did not answer.
   */
  async finish(query: URLSearchParams, pending: PendingLogin, redirectUri: string): Promise<OidcIdentity> {
    const config = await this.unavailableAs503(this.configuration());
    if (query.get('state') !== pending.state) throw new InvalidInput('This login does not match the one this browser started (state). Start again.', 'oidc_state');
    const error = query.get('error');
    if (error) throw new Forbidden(`The provider did not log you in (${error.slice(0, 100)}).`, 'oidc_refused');
    const current = new URL(redirectUri);
    current.search = query.toString();
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await within(
        client.authorizationCodeGrant(config, current, { pkceCodeVerifier: pending.verifier, expectedState: pending.state, expectedNonce: pending.nonce, idTokenExpected: true }),
        this.s.timeoutMs,
        'the OpenID provider (token endpoint)',
      );
    } catch (err) {
      throw this.classify(err);
    }
    const idClaims = tokens.claims()!;
    let info: Record<string, unknown> | null = null;
    if (idClaims.email === undefined || idClaims.email_verified === undefined || (this.s.adminGroup && idClaims[this.s.groupsClaim] === undefined)) {
      try {
        info = await within(client.fetchUserInfo(config, tokens.access_token, idClaims.sub), this.s.timeoutMs, 'the OpenID provider (userinfo)');
      } catch (err) {
        throw this.classify(err);
      }
    }
    const email = verifiedEmail(idClaims, info);
    const groups = idClaims[this.s.groupsClaim] ?? info?.[this.s.groupsClaim];
    return { subject: idClaims.sub, email, admin: this.s.adminGroup ? groupsOf(groups).includes(this.s.adminGroup) : null };
  }

  private async unavailableAs503<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (err) {
      throw new TemporaryFailure(`The OpenID provider could not be reached: ${(err as Error).message}`, 'oidc_unavailable');
    }
  }

  /** Network trouble is the provider's (503); anything else is a response that failed a check (400). */
  private classify(err: unknown): Error {
    const e = err as Error & { code?: string; error?: string };
    if (e.code === 'ETIMEOUT' || e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'OAUTH_TIMEOUT' || e.message === 'fetch failed') {
      return new TemporaryFailure(`The OpenID provider could not be reached: ${e.message}`, 'oidc_unavailable');
    }
    // openid-client's message is generic ("unexpected JWT claim value"); its cause names the check ("nonce").
    const detail = e.cause instanceof Error ? e.cause.message : e.message;
    return new InvalidInput(`The provider's answer was refused: ${detail}${e.error ? ` (${e.error})` : ''}`, 'oidc_invalid');
  }
}

/** A groups claim as providers send it: an array of names, or one name. */
/**
 * The address the provider vouches for. The address and its `email_verified` are read together,
 * from the ID token or else from userinfo, never the address from one and the flag from the other:
 * a token that says "verified" without naming an address must not vouch for whatever userinfo names.
 * Userinfo completes the token's flag only for the same address.
 */
export function verifiedEmail(idClaims: Record<string, unknown>, info: Record<string, unknown> | null): string {
  let email = idClaims.email;
  let verified = idClaims.email_verified;
  if (email === undefined && info) ({ email, email_verified: verified } = info);
  else if (verified === undefined && info && info.email === email) verified = info.email_verified;
  if (typeof email !== 'string' || !email) throw new Forbidden('The provider gave no e-mail address, so no account can be chosen.', 'oidc_no_email');
  // Some providers send the boolean as a string.
  if (verified !== true && verified !== 'true') {
    throw new Forbidden(`The provider has not verified ${email}, so it cannot log in to the account of that address.`, 'oidc_unverified');
  }
  return email;
}

function groupsOf(value: unknown): string[] {
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === 'string');
  if (typeof value === 'string') return [value];
  return [];
}
