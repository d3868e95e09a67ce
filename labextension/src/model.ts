/**
 * The user's jobs, polled from `GET jobs`: quickly while the Jobs panel is
 * visible, slowly in the background, so a job that finishes is noticed (and
 * announced through `finished`) even when the panel is closed.
 */
import type { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { AIConsoleClient } from './request';
import { isFinished } from './status';
import type { IJob, JobStatus } from './types';

/** Statuses announced when a job reaches them. */
const ANNOUNCED: readonly JobStatus[] = ['COMPLETED', 'FAILED'];

/** How far the server's clock may be behind the browser's. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

export interface IJobsModelOptions {
  client: AIConsoleClient;
  /** Milliseconds between polls while the panel is visible. */
  interval?: number;
  /** Milliseconds between polls while it is hidden. */
  backgroundInterval?: number;
}

/** The user's jobs, kept fresh by polling. */
export class JobsModel implements IDisposable {
  constructor(options: IJobsModelOptions) {
    this._client = options.client;
    this._interval = options.interval ?? 3000;
    this._backgroundInterval = options.backgroundInterval ?? 30000;
    this._poll = new Poll({
      factory: () => this._fetch(),
      frequency: this._frequency(),
      name: 'ai-console:jobs',
      standby: 'never'
    });
  }

  /** Emitted after each poll and each job update. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted once per job that turns COMPLETED or FAILED while the Lab is open. */
  get finished(): ISignal<this, IJob> {
    return this._finished;
  }

  /** The jobs of the last poll, newest first. */
  get jobs(): readonly IJob[] {
    return this._jobs;
  }

  /** Whether one poll has answered. */
  get loaded(): boolean {
    return this._loaded;
  }

  /** The last poll's error, or null when it answered. */
  get error(): string | null {
    return this._error;
  }

  /** Whether the Jobs panel is visible: it polls faster then. */
  get visible(): boolean {
    return this._visible;
  }
  set visible(visible: boolean) {
    if (visible === this._visible) {
      return;
    }
    this._visible = visible;
    this._poll.frequency = this._frequency();
    if (visible) {
      void this.refresh();
    }
  }

  /** Sets the poll intervals (milliseconds). */
  setIntervals(interval: number, backgroundInterval: number): void {
    this._interval = Math.max(1000, interval);
    this._backgroundInterval = Math.max(this._interval, backgroundInterval);
    this._poll.frequency = this._frequency();
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** One job, if the last poll had it. */
  get(jobId: string): IJob | undefined {
    return this._jobs.find(job => job.job_id === jobId);
  }

  /** Polls now. */
  async refresh(): Promise<void> {
    await this._poll.refresh();
  }

  /** Takes a job fetched elsewhere (detail view, submit, cancel). */
  update(job: IJob): void {
    const index = this._jobs.findIndex(j => j.job_id === job.job_id);
    if (index >= 0) {
      this._jobs = [...this._jobs];
      this._jobs[index] = job;
    } else {
      this._jobs = [job, ...this._jobs];
    }
    this._observe(job, true);
    this._changed.emit();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  private _frequency() {
    return {
      interval: this._visible ? this._interval : this._backgroundInterval,
      backoff: true,
      max: 5 * 60 * 1000
    };
  }

  private async _fetch(): Promise<void> {
    try {
      const jobs = await this._client.listJobs();
      const first = !this._loaded;
      for (const job of jobs) {
        this._observe(job, !first);
      }
      this._jobs = jobs;
      this._error = null;
      this._loaded = true;
    } catch (error) {
      this._error = error instanceof Error ? error.message : String(error);
      this._changed.emit();
      throw error; // the poll backs off
    }
    this._changed.emit();
  }

  /**
   * Remembers the job's status and announces a change to COMPLETED or FAILED.
   * A job first seen already finished is announced only when it was created
   * after the Lab started (it ran between two slow polls).
   */
  private _observe(job: IJob, announceNew: boolean): void {
    const previous = this._statuses.get(job.job_id);
    this._statuses.set(job.job_id, job.status);
    if (!ANNOUNCED.includes(job.status) || this._announced.has(job.job_id)) {
      return;
    }
    const turned =
      previous !== undefined
        ? !isFinished({ status: previous })
        : announceNew && job.create_time >= this._started - CLOCK_SKEW_MS;
    if (turned) {
      this._announced.add(job.job_id);
      this._finished.emit(job);
    }
  }

  private _client: AIConsoleClient;
  private _interval: number;
  private _backgroundInterval: number;
  private _poll: Poll;
  private _visible = false;
  private _jobs: IJob[] = [];
  private _loaded = false;
  private _error: string | null = null;
  private _statuses = new Map<string, JobStatus>();
  private _announced = new Set<string>();
  private _started = Date.now();
  private _changed = new Signal<this, void>(this);
  private _finished = new Signal<this, IJob>(this);
}
