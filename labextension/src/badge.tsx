/** The status badge of a job: its state, with the pending reason or progress. */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { jobState, progressText, stateLabel } from './status';
import type { IJob } from './types';

export function StatusBadge(props: {
  job: IJob;
  trans: TranslationBundle;
}): JSX.Element {
  const { job, trans } = props;
  const state = jobState(job);
  let detail = '';
  if (state === 'pending') {
    detail = job.pending_reason ?? '';
  } else if (state === 'running') {
    detail = progressText(job, trans);
  }
  return (
    <span
      className={`jp-AIConsole-badge jp-AIConsole-badge-${state}`}
      data-testid="ai-console-status-badge"
      data-state={state}
      title={job.status_message ?? job.status}
    >
      <span className="jp-AIConsole-badgeLabel">
        {stateLabel(state, trans)}
      </span>
      {detail ? (
        <span className="jp-AIConsole-badgeDetail">{detail}</span>
      ) : null}
    </span>
  );
}
