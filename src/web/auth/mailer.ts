import type { Queryable } from '../../db/pool.ts';
import { log } from '../../log.ts';

/**
 * The one place the panel sends mail from (login links, password resets, rejection notices).
 * It goes through the outbound queue like every other mail.
 */
export interface PanelMail {
  to: string;
  subject: string;
  text: string;
}

type Sender = (db: Queryable, mail: PanelMail) => Promise<void>;

let sender: Sender = async (_db, mail) => {
  log.warn({ to: mail.to, subject: mail.subject }, 'no outbound queue yet: panel mail not sent');
};

export async function sendPanelMail(db: Queryable, mail: PanelMail): Promise<void> {
  await sender(db, mail);
}

/** Tests replace the sender to read the links they need. */
export function setPanelMailSender(fn: Sender): void {
  sender = fn;
}
