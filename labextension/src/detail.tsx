/**
 * The detail view of one job (a main-area tab): its fields, progress, the live
 * log, and the actions: open the executed notebook or its HTML, cancel, re-run.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { StatusBadge } from './badge';
import { useNow, useSignal } from './hooks';
import { JobLog } from './log';
import type { JobsModel } from './model';
import type { AIConsoleClient } from './request';
import {
  elapsed,
  formatTime,
  isCancellable,
  isFinished,
  jobState,
  progressText,
  statusSummary
} from './status';
import type { IJob } from './types';

/** Milliseconds between fetches of a running job shown in a detail view. */
const JOB_REFRESH_MS = 3000;

/** What the detail view asks its host to do. */
export interface IJobDetailActions {
  /** Opens a file of the server's root in JupyterLab. */
  openFile: (path: string) => void;
  /** Opens the Re-run dialog for the job. */
  rerun: (job: IJob) => void;
}

export interface IJobDetailOptions {
  jobId: string;
  client: AIConsoleClient;
  model: JobsModel;
  trans: TranslationBundle;
  actions: IJobDetailActions;
}

/** The widget of a job's detail view; it owns the job's log stream. */
export class JobDetailWidget extends ReactWidget {
  constructor(options: IJobDetailOptions) {
    super();
    this._options = options;
    this.addClass('jp-AIConsole-detail');
    this.node.dataset.testid = 'ai-console-job-detail';
    this.node.dataset.jobId = options.jobId;
    this._log = new JobLog({
      client: options.client,
      jobId: options.jobId,
      finished: async () => isFinished(await this._fetch())
    });
    void this._log.start();
    void this._refreshLoop();
  }

  get jobId(): string {
    return this._options.jobId;
  }

  /** Fetches the job and shares it with the Jobs panel's model. */
  private async _fetch(): Promise<IJob> {
    const job = await this._options.client.getJob(this._options.jobId);
    if (!this.isDisposed) {
      this._options.model.update(job);
    }
    return job;
  }

  /** Keeps the job's fields fresh while it runs. */
  private async _refreshLoop(): Promise<void> {
    while (!this.isDisposed) {
      try {
        const job = await this._fetch();
        if (this._error) {
          this._error = null;
          this.update();
        }
        if (isFinished(job)) {
          this.update();
          return;
        }
      } catch (error) {
        this._error = error instanceof Error ? error.message : String(error);
        this.update();
      }
      await new Promise(resolve => setTimeout(resolve, JOB_REFRESH_MS));
    }
  }

  dispose(): void {
    this._log.dispose();
    super.dispose();
  }

  render(): JSX.Element {
    return (
      <JobDetail
        jobId={this._options.jobId}
        model={this._options.model}
        client={this._options.client}
        log={this._log}
        error={this._error}
        trans={this._options.trans}
        actions={this._options.actions}
        onStatus={status => {
          this.node.dataset.status = status;
        }}
      />
    );
  }

  private _options: IJobDetailOptions;
  private _log: JobLog;
  private _error: string | null = null;
}

interface IJobDetailProps {
  jobId: string;
  model: JobsModel;
  client: AIConsoleClient;
  log: JobLog;
  error: string | null;
  trans: TranslationBundle;
  actions: IJobDetailActions;
  onStatus: (status: string) => void;
}

function JobDetail(props: IJobDetailProps): JSX.Element {
  const { jobId, model, client, log, trans, actions } = props;
  useSignal(model.changed);
  useSignal(log.changed);
  const [cancelError, setCancelError] = React.useState<string | null>(null);
  const [cancelling, setCancelling] = React.useState(false);
  const job = model.get(jobId);
  const now = useNow(1000, !!job && jobState(job) === 'running');

  React.useEffect(() => {
    if (job) {
      props.onStatus(job.status);
    }
  }, [job?.status]);

  if (!job) {
    return (
      <div className="jp-AIConsole-detailBody">
        {props.error ? (
          <div className="jp-AIConsole-formError" role="alert">
            {trans.__('Could not load job %1: %2', jobId, props.error)}
          </div>
        ) : (
          <p>{trans.__('Loading…')}</p>
        )}
      </div>
    );
  }

  const finished = isFinished(job);
  const outputs = job.output_files ?? {};

  const cancel = async () => {
    const answer = await showDialog({
      title: trans.__('Cancel job?'),
      body: trans.__(
        'Job "%1" will be stopped. Its log and the outputs so far are kept.',
        job.name
      ),
      buttons: [
        Dialog.cancelButton({ label: trans.__('Keep running') }),
        Dialog.warnButton({ label: trans.__('Cancel job') })
      ]
    });
    if (!answer.button.accept) {
      return;
    }
    setCancelling(true);
    setCancelError(null);
    try {
      model.update(await client.cancelJob(job.job_id));
    } catch (error) {
      setCancelError(error instanceof Error ? error.message : String(error));
    } finally {
      setCancelling(false);
    }
  };

  const progress = progressText(job, trans);
  const rows: [string, React.ReactNode][] = [
    [trans.__('Status'), statusSummary(job, trans)],
    [trans.__('Notebook'), job.input_path],
    [trans.__('Project'), job.project ?? ''],
    [trans.__('Flavor'), job.flavor ?? ''],
    [
      trans.__('GPU'),
      job.gpu_slice?.description ??
        [
          job.gpu_slice?.fraction,
          job.gpu_slice?.gpu_type ?? job.gpu_type,
          job.gpu_slice?.node
        ]
          .filter(Boolean)
          .join(' · ')
    ],
    [trans.__('Image'), job.image ?? ''],
    [trans.__('Owner'), job.owner],
    [trans.__('Created'), formatTime(job.create_time)],
    [trans.__('Started'), formatTime(job.start_time)],
    [
      finished ? trans.__('Finished') : trans.__('Elapsed'),
      finished ? formatTime(job.end_time) : elapsed(job, now)
    ],
    [trans.__('Run time'), finished ? elapsed(job) : ''],
    [
      trans.__('Attempts'),
      typeof job.attempts === 'number'
        ? trans.__(
            '%1 (retries allowed: %2)',
            job.attempts,
            job.max_retries ?? 0
          )
        : ''
    ],
    [
      trans.__('Timeout'),
      typeof job.timeout_seconds === 'number'
        ? trans.__('%1 minutes', Math.round(job.timeout_seconds / 60))
        : ''
    ],
    [trans.__('Tags'), (job.tags ?? []).join(', ')],
    [trans.__('Snapshot'), job.snapshot_path ?? ''],
    [trans.__('Re-run of'), job.rerun_of ?? ''],
    [trans.__('Job ID'), job.job_id]
  ];
  const parameters = Object.entries(job.parameters ?? {});
  const environment = Object.entries(job.environment ?? {});

  return (
    <div className="jp-AIConsole-detailBody">
      <div className="jp-AIConsole-detailHeader">
        <StatusBadge job={job} trans={trans} />
        <h2 className="jp-AIConsole-detailTitle">{job.name}</h2>
      </div>

      {job.status === 'FAILED' && typeof job.failed_cell_number === 'number' ? (
        <div
          className="jp-AIConsole-failedCell"
          data-testid="ai-console-failed-cell"
          role="alert"
          title={trans.__('Code cells counted from 1, as in the log.')}
        >
          {trans.__('Failed in cell %1', job.failed_cell_number)}
        </div>
      ) : null}
      {job.status_message ? (
        <p
          className="jp-AIConsole-statusMessage"
          data-testid="ai-console-status-message"
        >
          {job.status_message}
        </p>
      ) : null}
      {props.error ? (
        <div className="jp-AIConsole-formError" role="alert">
          {props.error}
        </div>
      ) : null}

      {jobState(job) === 'running' && progress ? (
        <div
          className="jp-AIConsole-progress"
          data-testid="ai-console-job-progress"
        >
          <progress
            value={job.progress?.cell ?? 0}
            max={job.progress?.cells || 1}
          />
          <span>{progress}</span>
        </div>
      ) : null}

      <div className="jp-AIConsole-actions">
        <button
          type="button"
          className="jp-mod-styled jp-mod-accept jp-AIConsole-button"
          data-testid="ai-console-open-output"
          disabled={!outputs.ipynb}
          title={
            outputs.ipynb ?? trans.__('The executed notebook is not there yet.')
          }
          onClick={() => outputs.ipynb && actions.openFile(outputs.ipynb)}
        >
          {trans.__('Open executed notebook')}
        </button>
        {job.output_formats?.includes('html') || outputs.html ? (
          <button
            type="button"
            className="jp-mod-styled jp-AIConsole-button"
            data-testid="ai-console-open-html"
            disabled={!outputs.html}
            title={outputs.html ?? trans.__('The HTML is not there yet.')}
            onClick={() => outputs.html && actions.openFile(outputs.html)}
          >
            {trans.__('Open HTML')}
          </button>
        ) : null}
        {!finished ? (
          <button
            type="button"
            className="jp-mod-styled jp-mod-warn jp-AIConsole-button"
            data-testid="ai-console-cancel"
            disabled={!isCancellable(job) || cancelling}
            onClick={() => void cancel()}
          >
            {job.status === 'STOPPING' || cancelling
              ? trans.__('Cancelling…')
              : trans.__('Cancel')}
          </button>
        ) : null}
        <button
          type="button"
          className="jp-mod-styled jp-AIConsole-button"
          data-testid="ai-console-rerun"
          onClick={() => actions.rerun(job)}
        >
          {trans.__('Re-run')}
        </button>
      </div>
      {cancelError ? (
        <div className="jp-AIConsole-formError" role="alert">
          {trans.__('Could not cancel the job: %1', cancelError)}
        </div>
      ) : null}

      <table
        className="jp-AIConsole-fields"
        data-testid="ai-console-job-fields"
      >
        <tbody>
          {rows
            .filter(([, value]) => value !== '' && value !== null)
            .map(([label, value]) => (
              <tr key={label}>
                <th>{label}</th>
                <td>{value}</td>
              </tr>
            ))}
          {parameters.length ? (
            <tr>
              <th>{trans.__('Parameters')}</th>
              <td>
                <ul
                  className="jp-AIConsole-kv"
                  data-testid="ai-console-job-parameters"
                >
                  {parameters.map(([key, value]) => (
                    <li key={key}>
                      <code>{key}</code> = <code>{JSON.stringify(value)}</code>
                    </li>
                  ))}
                </ul>
              </td>
            </tr>
          ) : null}
          {environment.length ? (
            <tr>
              <th>{trans.__('Environment')}</th>
              <td>
                <ul className="jp-AIConsole-kv">
                  {environment.map(([key, value]) => (
                    <li key={key}>
                      <code>
                        {key}={String(value)}
                      </code>
                    </li>
                  ))}
                </ul>
              </td>
            </tr>
          ) : null}
          {Object.keys(outputs).length ? (
            <tr>
              <th>{trans.__('Output files')}</th>
              <td>
                <ul className="jp-AIConsole-kv">
                  {Object.entries(outputs).map(([format, path]) => (
                    <li key={format}>
                      {format}: <code>{path}</code>
                    </li>
                  ))}
                </ul>
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>

      <LogView log={log} trans={trans} />
    </div>
  );
}

/** The log, kept scrolled to its end unless the user scrolled up. */
function LogView(props: {
  log: JobLog;
  trans: TranslationBundle;
}): JSX.Element {
  const { log, trans } = props;
  const pre = React.useRef<HTMLPreElement>(null);
  const stick = React.useRef(true);
  React.useLayoutEffect(() => {
    if (stick.current && pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight;
    }
  }, [log.text]);
  return (
    <div className="jp-AIConsole-logSection">
      <h3>
        {trans.__('Log')}
        {log.following ? (
          <span className="jp-AIConsole-live" data-testid="ai-console-log-live">
            {trans.__('live')}
          </span>
        ) : null}
      </h3>
      {log.error ? (
        <div className="jp-AIConsole-formError" role="alert">
          {trans.__('Could not read the log: %1', log.error)}
        </div>
      ) : null}
      {log.truncated ? (
        <p className="jp-AIConsole-hint">
          {trans.__('Earlier lines are not shown.')}
        </p>
      ) : null}
      <pre
        ref={pre}
        className="jp-AIConsole-log"
        data-testid="ai-console-job-log"
        data-following={log.following ? 'true' : 'false'}
        onScroll={event => {
          const node = event.currentTarget;
          stick.current =
            node.scrollHeight - node.scrollTop - node.clientHeight < 24;
        }}
      >
        {log.text}
      </pre>
    </div>
  );
}
