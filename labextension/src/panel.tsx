/**
 * The Jobs panel of the left sidebar: the user's jobs with their status, a
 * status filter and a search box (both applied in the browser to the polled
 * list, so the background poll that announces finished jobs sees every job).
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget, refreshIcon } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import * as React from 'react';

import { StatusBadge } from './badge';
import { useNow, useSignal } from './hooks';
import { jobsIcon } from './icons';
import type { JobsModel } from './model';
import {
  elapsed,
  FILTER_STATES,
  formatTime,
  isFinished,
  jobState,
  JobState,
  stateLabel
} from './status';
import type { IJob } from './types';

export interface IJobsPanelOptions {
  model: JobsModel;
  trans: TranslationBundle;
  /** The user the Lab runs for; other owners get an Owner column. */
  currentUser: () => string;
  openJob: (jobId: string) => void;
}

/** The sidebar widget. The model polls faster while it is visible. */
export class JobsPanel extends ReactWidget {
  constructor(options: IJobsPanelOptions) {
    super();
    this._options = options;
    this.id = 'ai-console-jobs-panel';
    this.addClass('jp-AIConsole-jobsPanel');
    this.node.dataset.testid = 'ai-console-jobs-panel';
    this.title.icon = jobsIcon;
    this.title.caption = options.trans.__('Jobs');
  }

  render(): JSX.Element {
    return <JobsList {...this._options} />;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._options.model.visible = true;
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._options.model.visible = false;
  }

  private _options: IJobsPanelOptions;
}

/** Whether the job matches the search text (name, notebook, tags, owner, ...). */
export function matchesSearch(job: IJob, search: string): boolean {
  const words = search.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) {
    return true;
  }
  const haystack = [
    job.name,
    job.input_path,
    job.owner,
    job.project ?? '',
    job.flavor ?? '',
    job.job_id,
    ...(job.tags ?? [])
  ]
    .join(' ')
    .toLowerCase();
  return words.every(word => haystack.includes(word));
}

/** Whether the job is in the filter's state ('' for every job). */
export function matchesFilter(job: IJob, filter: JobState | ''): boolean {
  if (!filter) {
    return true;
  }
  const entry = FILTER_STATES.find(f => f.state === filter);
  return !!entry && entry.statuses.includes(job.status);
}

function JobsList(props: IJobsPanelOptions): JSX.Element {
  const { model, trans, openJob } = props;
  useSignal(model.changed);
  const [filter, setFilter] = React.useState<JobState | ''>('');
  const [search, setSearch] = React.useState('');
  const jobs = model.jobs;
  const anyRunning = jobs.some(job => jobState(job) === 'running');
  const now = useNow(1000, anyRunning && model.visible);
  const user = props.currentUser();
  const showOwner = jobs.some(job => job.owner !== user);
  const shown = jobs.filter(
    job => matchesFilter(job, filter) && matchesSearch(job, search)
  );

  return (
    <div className="jp-AIConsole-jobsBody">
      <div className="jp-AIConsole-jobsHeader">
        <h2>{trans.__('Jobs')}</h2>
        <button
          type="button"
          className="jp-AIConsole-iconButton"
          data-testid="ai-console-jobs-refresh"
          title={trans.__('Refresh')}
          onClick={() => void model.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      <div className="jp-AIConsole-jobsControls">
        <select
          className="jp-mod-styled"
          data-testid="ai-console-jobs-filter"
          aria-label={trans.__('Status')}
          value={filter}
          onChange={event => setFilter(event.target.value as JobState | '')}
        >
          <option value="">{trans.__('All statuses')}</option>
          {FILTER_STATES.map(({ state }) => (
            <option key={state} value={state}>
              {stateLabel(state, trans)}
            </option>
          ))}
        </select>
        <input
          className="jp-mod-styled"
          data-testid="ai-console-jobs-search"
          type="search"
          placeholder={trans.__('Search name, notebook, tag…')}
          aria-label={trans.__('Search')}
          value={search}
          onChange={event => setSearch(event.target.value)}
        />
      </div>
      {model.error ? (
        <div
          className="jp-AIConsole-formError"
          role="alert"
          data-testid="ai-console-jobs-error"
        >
          {trans.__('Could not load your jobs: %1', model.error)}
        </div>
      ) : null}
      {!model.loaded && !model.error ? (
        <p className="jp-AIConsole-hint">{trans.__('Loading…')}</p>
      ) : null}
      {model.loaded && !jobs.length ? (
        <p className="jp-AIConsole-hint" data-testid="ai-console-jobs-empty">
          {trans.__(
            'No jobs yet. Open a notebook and press "Run as job" in its toolbar.'
          )}
        </p>
      ) : null}
      {jobs.length && !shown.length ? (
        <p className="jp-AIConsole-hint" data-testid="ai-console-jobs-empty">
          {trans.__('No job matches the filter.')}
        </p>
      ) : null}
      <ul
        className="jp-AIConsole-jobList"
        data-show-owner={showOwner ? 'true' : 'false'}
      >
        {shown.map(job => (
          <JobRow
            key={job.job_id}
            job={job}
            showOwner={showOwner}
            now={now}
            trans={trans}
            onOpen={() => openJob(job.job_id)}
          />
        ))}
      </ul>
    </div>
  );
}

function JobRow(props: {
  job: IJob;
  showOwner: boolean;
  now: number;
  trans: TranslationBundle;
  onOpen: () => void;
}): JSX.Element {
  const { job, showOwner, now, trans, onOpen } = props;
  const state = jobState(job);
  let time: string;
  if (isFinished(job)) {
    time = trans.__('finished %1', formatTime(job.end_time ?? job.create_time));
  } else if (state === 'running' || state === 'cancelling') {
    const runFor = elapsed(job, now);
    time = runFor ? trans.__('running for %1', runFor) : '';
  } else {
    time = trans.__('submitted %1', formatTime(job.create_time));
  }
  return (
    <li
      className="jp-AIConsole-jobRow"
      data-testid="ai-console-job-row"
      data-job-id={job.job_id}
      data-status={job.status}
      data-state={state}
      role="button"
      tabIndex={0}
      title={job.input_path}
      onClick={onOpen}
      onKeyDown={event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          onOpen();
        }
      }}
    >
      <div className="jp-AIConsole-jobRowTop">
        <StatusBadge job={job} trans={trans} />
        <span
          className="jp-AIConsole-jobName"
          data-testid="ai-console-job-name"
        >
          {job.name}
        </span>
      </div>
      <div className="jp-AIConsole-jobRowMeta">
        {job.project ? (
          <span data-column="project" title={trans.__('Project')}>
            {job.project}
          </span>
        ) : null}
        {showOwner ? (
          <span
            data-column="owner"
            data-testid="ai-console-job-owner"
            title={trans.__('Owner')}
          >
            {job.owner}
          </span>
        ) : null}
        {time ? (
          <span data-column="time" data-testid="ai-console-job-time">
            {time}
          </span>
        ) : null}
        {(job.tags ?? []).map(tag => (
          <span key={tag} className="jp-AIConsole-tag" data-column="tag">
            {tag}
          </span>
        ))}
      </div>
    </li>
  );
}
