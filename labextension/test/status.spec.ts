import { describe, expect, it } from 'vitest';

import {
  FILTER_STATES,
  elapsed,
  formatDuration,
  formatTime,
  isCancellable,
  isFinished,
  jobState,
  progressText,
  stateLabel,
  statusSummary
} from '../src/status';
import type { JobState } from '../src/status';
import { JOB_STATUSES } from '../src/types';
import type { IJob, JobStatus } from '../src/types';
import { trans } from './translation';

function job(status: JobStatus, extra: Partial<IJob> = {}): IJob {
  return {
    job_id: '0123456789abcdef0123456789abcdef',
    name: 'train-2024-01-05_030409',
    owner: 'alice',
    input_path: 'train.ipynb',
    status,
    create_time: 1_700_000_000_000,
    ...extra
  };
}

describe('isFinished / isCancellable', () => {
  it.each([
    ['CREATED', false, true],
    ['QUEUED', false, true],
    ['IN_PROGRESS', false, true],
    ['STOPPING', false, false],
    ['COMPLETED', true, false],
    ['FAILED', true, false],
    ['STOPPED', true, false]
  ] as [JobStatus, boolean, boolean][])(
    '%s: finished %s, cancellable %s',
    (status, finished, cancellable) => {
      expect(isFinished({ status })).toBe(finished);
      expect(isCancellable({ status })).toBe(cancellable);
    }
  );
});

describe('jobState', () => {
  it.each([
    ['CREATED', 'queued'],
    ['QUEUED', 'queued'],
    ['IN_PROGRESS', 'running'],
    ['STOPPING', 'cancelling'],
    ['COMPLETED', 'completed'],
    ['FAILED', 'failed'],
    ['STOPPED', 'cancelled']
  ] as [JobStatus, JobState][])('shows %s as %s', (status, state) => {
    expect(jobState(job(status))).toBe(state);
  });

  it('shows a queued job with a pending reason as pending', () => {
    expect(jobState(job('QUEUED', { pending_reason: 'Unschedulable' }))).toBe(
      'pending'
    );
    expect(
      jobState(job('CREATED', { pending_reason: 'ImagePullBackOff' }))
    ).toBe('pending');
    expect(jobState(job('QUEUED', { pending_reason: null }))).toBe('queued');
    expect(jobState(job('QUEUED', { pending_reason: '' }))).toBe('queued');
  });

  it('ignores a stale pending reason once the job runs', () => {
    expect(
      jobState(job('IN_PROGRESS', { pending_reason: 'Unschedulable' }))
    ).toBe('running');
  });
});

describe('FILTER_STATES', () => {
  it('puts every status under exactly one filter', () => {
    const covered = FILTER_STATES.flatMap(f => f.statuses);
    expect([...covered].sort()).toEqual([...JOB_STATUSES].sort());
  });

  it('files each status under the filter of the state it shows', () => {
    for (const { state, statuses } of FILTER_STATES) {
      for (const status of statuses) {
        const shown = jobState(job(status));
        // A job being cancelled is listed with the cancelled ones.
        expect(shown === 'cancelling' ? 'cancelled' : shown).toBe(state);
      }
    }
  });
});

describe('stateLabel', () => {
  it.each([
    ['queued', 'Queued'],
    ['pending', 'Pending'],
    ['running', 'Running'],
    ['cancelling', 'Cancelling'],
    ['completed', 'Completed'],
    ['failed', 'Failed'],
    ['cancelled', 'Cancelled']
  ] as [JobState, string][])('labels %s "%s"', (state, label) => {
    expect(stateLabel(state, trans)).toBe(label);
  });
});

describe('progressText', () => {
  it('says which cell of how many', () => {
    expect(
      progressText(
        job('IN_PROGRESS', { progress: { cell: 3, cells: 10 } }),
        trans
      )
    ).toBe('cell 3 of 10');
  });

  it('omits the total when it is unknown', () => {
    expect(
      progressText(
        job('IN_PROGRESS', { progress: { cell: 2, cells: 0 } }),
        trans
      )
    ).toBe('cell 2');
    expect(
      progressText(job('IN_PROGRESS', { progress: { cell: 2 } }), trans)
    ).toBe('cell 2');
  });

  it('is empty without progress', () => {
    expect(progressText(job('IN_PROGRESS'), trans)).toBe('');
    expect(progressText(job('IN_PROGRESS', { progress: null }), trans)).toBe(
      ''
    );
    expect(
      progressText(job('IN_PROGRESS', { progress: { cells: 5 } }), trans)
    ).toBe('');
  });
});

describe('statusSummary', () => {
  it('gives the pending reason', () => {
    expect(
      statusSummary(job('QUEUED', { pending_reason: 'Unschedulable' }), trans)
    ).toBe('Pending: Unschedulable');
  });

  it('gives the progress of a running job', () => {
    expect(
      statusSummary(
        job('IN_PROGRESS', { progress: { cell: 4, cells: 12 } }),
        trans
      )
    ).toBe('Running, cell 4 of 12');
    expect(statusSummary(job('IN_PROGRESS'), trans)).toBe('Running');
  });

  it('is the label alone otherwise', () => {
    expect(statusSummary(job('QUEUED'), trans)).toBe('Queued');
    expect(
      statusSummary(
        job('COMPLETED', { progress: { cell: 9, cells: 9 } }),
        trans
      )
    ).toBe('Completed');
    expect(statusSummary(job('FAILED', { failed_cell: 3 }), trans)).toBe(
      'Failed'
    );
    expect(statusSummary(job('STOPPED'), trans)).toBe('Cancelled');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0:00'],
    [999, '0:00'],
    [59_999, '0:59'],
    [65_000, '1:05'],
    [600_000, '10:00'],
    [3_599_000, '59:59'],
    [3_600_000, '1:00:00'],
    [3_723_000, '1:02:03'],
    [90_061_000, '25:01:01'],
    [-5_000, '0:00']
  ])('prints %i ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('elapsed', () => {
  const start = 1_700_000_000_000;

  it('is empty before the job starts', () => {
    expect(elapsed(job('QUEUED'), start)).toBe('');
    expect(elapsed(job('QUEUED', { start_time: null }), start)).toBe('');
  });

  it('counts up to now while the job runs', () => {
    const running = job('IN_PROGRESS', { start_time: start, end_time: null });
    expect(elapsed(running, start + 125_000)).toBe('2:05');
  });

  it('stops at the end time once the job has ended', () => {
    const done = job('COMPLETED', {
      start_time: start,
      end_time: start + 3_723_000
    });
    expect(elapsed(done, start + 10 * 3_600_000)).toBe('1:02:03');
  });
});

describe('formatTime', () => {
  it('is empty without a time', () => {
    expect(formatTime(null)).toBe('');
    expect(formatTime(undefined)).toBe('');
  });

  it('prints a time in the local format', () => {
    const ms = 1_700_000_000_000;
    expect(formatTime(ms)).toBe(new Date(ms).toLocaleString());
  });
});
