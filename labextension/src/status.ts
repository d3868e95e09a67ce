/**
 * How a job's API status is shown: the badge state, its label, and the times the
 * Jobs panel and the detail view print.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { IJob, JobStatus } from './types';

/** The states a user sees (several API statuses share one). */
export type JobState =
  | 'queued'
  | 'pending'
  | 'running'
  | 'cancelling'
  | 'completed'
  | 'failed'
  | 'cancelled';

/** Statuses after which the job no longer changes. */
export const FINISHED_STATUSES: readonly JobStatus[] = [
  'COMPLETED',
  'FAILED',
  'STOPPED'
];

export function isFinished(job: Pick<IJob, 'status'>): boolean {
  return FINISHED_STATUSES.includes(job.status);
}

/** Whether the user may still cancel the job. */
export function isCancellable(job: Pick<IJob, 'status'>): boolean {
  return !isFinished(job) && job.status !== 'STOPPING';
}

/** The state a job's badge shows. */
export function jobState(job: IJob): JobState {
  switch (job.status) {
    case 'CREATED':
    case 'QUEUED':
      return job.pending_reason ? 'pending' : 'queued';
    case 'IN_PROGRESS':
      return 'running';
    case 'STOPPING':
      return 'cancelling';
    case 'COMPLETED':
      return 'completed';
    case 'FAILED':
      return 'failed';
    case 'STOPPED':
      return 'cancelled';
    default:
      return 'queued';
  }
}

/** The states offered by the Jobs panel's filter, with the statuses each covers. */
export const FILTER_STATES: readonly {
  state: JobState;
  statuses: JobStatus[];
}[] = [
  { state: 'queued', statuses: ['CREATED', 'QUEUED'] },
  { state: 'running', statuses: ['IN_PROGRESS'] },
  { state: 'completed', statuses: ['COMPLETED'] },
  { state: 'failed', statuses: ['FAILED'] },
  { state: 'cancelled', statuses: ['STOPPING', 'STOPPED'] }
];

/** The translated name of a state. */
export function stateLabel(state: JobState, trans: TranslationBundle): string {
  switch (state) {
    case 'queued':
      return trans.__('Queued');
    case 'pending':
      return trans.__('Pending');
    case 'running':
      return trans.__('Running');
    case 'cancelling':
      return trans.__('Cancelling');
    case 'completed':
      return trans.__('Completed');
    case 'failed':
      return trans.__('Failed');
    case 'cancelled':
      return trans.__('Cancelled');
  }
}

/** One line saying where the job is: state, pending reason, cell n of m. */
export function statusSummary(job: IJob, trans: TranslationBundle): string {
  const state = jobState(job);
  const label = stateLabel(state, trans);
  if (state === 'pending' && job.pending_reason) {
    return trans.__('%1: %2', label, job.pending_reason);
  }
  if (state === 'running') {
    const progress = progressText(job, trans);
    return progress ? trans.__('%1, %2', label, progress) : label;
  }
  return label;
}

/** "cell 3 of 10", or '' when the job reports no progress. */
export function progressText(job: IJob, trans: TranslationBundle): string {
  const cell = job.progress?.cell;
  const cells = job.progress?.cells;
  if (typeof cell !== 'number') {
    return '';
  }
  if (typeof cells === 'number' && cells > 0) {
    return trans.__('cell %1 of %2', cell, cells);
  }
  return trans.__('cell %1', cell);
}

/** "1:02:03" or "4:05" for a number of milliseconds. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return hours > 0
    ? `${hours}:${two(minutes)}:${two(seconds)}`
    : `${minutes}:${two(seconds)}`;
}

/** A local date and time (ms since the epoch), in the browser's locale. */
export function formatTime(ms: number | null | undefined): string {
  if (typeof ms !== 'number') {
    return '';
  }
  return new Date(ms).toLocaleString();
}

/** How long a running job has run, or '' when it has not started. */
export function elapsed(job: IJob, now: number = Date.now()): string {
  const start = job.start_time ?? null;
  if (typeof start !== 'number') {
    return '';
  }
  return formatDuration((job.end_time ?? now) - start);
}
