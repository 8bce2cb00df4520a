/*
 * What the use cases need of the configuration. The edges hand it over (a whole Config will do);
 * nothing in src/core/ reads the environment or calls config() itself.
 */

import type { Config } from '../config.ts';

export type CoreSettings = Pick<Config, 'mailDomain' | 'publicUrl' | 'noticeFrom' | 'confirmTokenHours' | 'retention' | 'heloName' | 'spamCheck' | 'authCheckTimeoutMs' | 'postSynchronousCommit'>;
