/**
 * A job's log as it grows: `GET jobs/{id}/log?follow=1` streamed chunk by chunk
 * while the job runs, read once when it has finished. A dropped stream of a job
 * still running is reopened (each read starts from the beginning of the log).
 */
import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import type { AIConsoleClient } from './request';

/** The most text kept; older lines are cut first. */
const MAX_CHARS = 2_000_000;

export interface IJobLogOptions {
  client: AIConsoleClient;
  jobId: string;
  /** Fetches the job again and says whether it has finished. */
  finished: () => Promise<boolean>;
}

/** The text of one job's log, kept up to date. */
export class JobLog implements IDisposable {
  constructor(options: IJobLogOptions) {
    this._options = options;
  }

  /** Emitted when the text or the error changes. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get text(): string {
    return this._text;
  }

  /** Whether older lines were cut to keep the view light. */
  get truncated(): boolean {
    return this._truncated;
  }

  /** Why the log could not be read, or null. */
  get error(): string | null {
    return this._error;
  }

  /** Whether the stream is open (the job runs). */
  get following(): boolean {
    return this._following;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Reads the log: streams it while the job runs, then once more if needed. */
  async start(): Promise<void> {
    if (this._started) {
      return;
    }
    this._started = true;
    let retryDelay = 1000;
    while (!this._disposed) {
      const finished = await this._options.finished().catch(() => false);
      if (this._disposed) {
        return;
      }
      const completed = await this._read(!finished);
      if (finished || this._disposed) {
        return;
      }
      if (completed) {
        // The stream ended on its own: the job has ended, or a proxy closed it.
        retryDelay = 1000;
      } else {
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
      await new Promise(resolve => setTimeout(resolve, retryDelay));
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._abort?.abort();
    Signal.clearData(this);
  }

  /** One read of the whole log; resolves false when it failed. */
  private async _read(follow: boolean): Promise<boolean> {
    this._abort = new AbortController();
    this._following = follow;
    let fresh = '';
    try {
      await this._options.client.readJobLog(this._options.jobId, {
        follow,
        signal: this._abort.signal,
        onChunk: chunk => {
          fresh += chunk;
          this._set(fresh);
        }
      });
      this._set(fresh);
      this._error = null;
      return true;
    } catch (error) {
      if (this._disposed) {
        return false;
      }
      this._error = error instanceof Error ? error.message : String(error);
      this._changed.emit();
      return false;
    } finally {
      this._following = false;
      if (!this._disposed) {
        this._changed.emit();
      }
    }
  }

  private _set(text: string): void {
    this._truncated = text.length > MAX_CHARS;
    this._text = this._truncated ? text.slice(text.length - MAX_CHARS) : text;
    this._error = null;
    this._changed.emit();
  }

  private _options: IJobLogOptions;
  private _text = '';
  private _truncated = false;
  private _error: string | null = null;
  private _following = false;
  private _started = false;
  private _disposed = false;
  private _abort: AbortController | null = null;
  private _changed = new Signal<this, void>(this);
}
