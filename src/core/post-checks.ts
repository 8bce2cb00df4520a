/*
 * The checks a post goes through as it arrives, once per message whatever the number of lists it
 * was sent to: the trace line of the hop into listkeeper, authentication (SPF, DKIM, DMARC, ARC)
 * and the spam scan. Their result (mail/post-checks.ts) is stored with the message and read by
 * the moderation rules (moderation-rules.ts) and by every copy (traceFields).
 */

import type { ListRow } from '../db/lists.ts';
import type { Logger } from '../log.ts';
import type { ParsedMessage } from '../mail/parse.ts';
import type { Peer, PostChecks } from '../mail/post-checks.ts';
import { receivedField } from '../mail/received.ts';
import { authenticatePost } from './post-authentication.ts';
import type { CoreSettings } from './settings.ts';
import { scanForSpam } from './spam-check.ts';

export interface PostCheckInput {
  raw: Buffer;
  message: ParsedMessage;
  envelopeFrom: string | null;
  /** who handed the message over; null for messages that did not come over SMTP (import, tests) */
  peer: Peer | null;
  /** the address a login vouched for (a member's reply from the web); see authenticatePost */
  submittedBy?: string | null;
  /** the lists it was posted to (their thresholds decide, not the checks) */
  lists: ListRow[];
  log: Logger;
}

export async function checkPost(input: PostCheckInput, settings: CoreSettings): Promise<PostChecks> {
  const checks: PostChecks = {};
  // The trace line of the hop into listkeeper, for the copies only: the archive keeps the bytes as received.
  if (input.peer) checks.received = receivedField(input.peer, { by: settings.heloName, id: input.peer.id, date: new Date() });
  // The spam scan (rspamd): { spam } or { spamUnchecked }; throws 451 when SPAM_CHECK_FAIL=tempfail.
  Object.assign(checks, await scanForSpam(input, settings.spamCheck));
  // SPF, DKIM, DMARC, ARC; bounded in time, never throws (post-authentication.ts).
  checks.auth = await authenticatePost(input, settings);
  return checks;
}
