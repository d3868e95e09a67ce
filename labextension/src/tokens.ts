/** What the Jobs plugin shares with the Run-as-job plugin. */
import { Token } from '@lumino/coreutils';

import type { JobsModel } from './model';
import type { AIConsoleClient } from './request';

/** Command ids. */
export namespace CommandIDs {
  export const runAsJob = 'ai-console:run-as-job';
  export const openJob = 'ai-console:open-job';
  export const openJobs = 'ai-console:open-jobs-panel';
  export const refreshJobs = 'ai-console:refresh-jobs';
}

/** The translation domain (`server_extension/locale/<lang>/LC_MESSAGES/ai_console.json`). */
export const TRANSLATION_DOMAIN = 'ai_console';

export interface IAIConsoleJobs {
  client: AIConsoleClient;
  model: JobsModel;
  /** Shows the Jobs panel and the job's detail view. */
  openJob(jobId: string): void;
}

export const IAIConsoleJobs = new Token<IAIConsoleJobs>(
  'jupyterhub-ai-console:IAIConsoleJobs',
  'The AI Console jobs: REST client, polled list, and how to open a job.'
);
