/**
 * The GPU slice in the status bar: "RTX3090 · 1/4 · 1.2/6.0 GiB · 35%",
 * polled from `GET slice` every few seconds while the page is visible.
 * Clicking it opens a small panel with the details and a link to the Jobs
 * panel. A failed poll keeps the last answer, marked stale, and backs off.
 * When the hub finds the slice idle the item turns to a warning, and a
 * countdown to the hub stopping the server raises a notification, once.
 */
import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import type { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';

import { useSignal } from './hooks';
import type { AIConsoleClient } from './request';
import {
  detailRows,
  idleMessage,
  idleWarning,
  nextIdleNotice,
  sliceLabel,
  sliceTitle
} from './slice';
import type { ISliceStatus } from './types';

/** The server's slice, kept fresh by polling. */
export class SliceStatusModel implements IDisposable {
  constructor(options: { client: AIConsoleClient; interval?: number }) {
    this._client = options.client;
    this._poll = new Poll({
      factory: () => this._fetch(),
      frequency: {
        interval: options.interval ?? 5000,
        backoff: true,
        max: 60 * 1000
      },
      name: 'ai-console:slice',
      // No requests while the browser tab is hidden.
      standby: 'when-hidden'
    });
  }

  /** Emitted after each poll, answered or failed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The last answer (null until one arrives). */
  get status(): ISliceStatus | null {
    return this._status;
  }

  /** The last poll's error, or null when it answered. */
  get error(): string | null {
    return this._error;
  }

  /** When the last answer arrived (ms since the epoch), or null. */
  get updated(): number | null {
    return this._updated;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  /** Polls now. */
  async refresh(): Promise<void> {
    await this._poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _fetch(): Promise<void> {
    try {
      this._status = await this._client.getSlice();
      this._error = null;
      this._updated = Date.now();
    } catch (error) {
      // Kept quiet (no console output): the item shows it is stale.
      this._error = error instanceof Error ? error.message : String(error);
      this._changed.emit();
      throw error; // the poll backs off
    }
    this._changed.emit();
  }

  private _client: AIConsoleClient;
  private _poll: Poll;
  private _status: ISliceStatus | null = null;
  private _error: string | null = null;
  private _updated: number | null = null;
  private _changed = new Signal<this, void>(this);
}

/** The status bar item; `onClick` opens (or closes) the detail panel. */
export class SliceStatusItem extends ReactWidget {
  constructor(options: {
    model: SliceStatusModel;
    trans: TranslationBundle;
    onClick: () => void;
  }) {
    super();
    this._options = options;
    this.addClass('jp-AIConsole-sliceStatus');
    this.addClass('jp-mod-highlight');
    this.node.dataset.testid = 'ai-console-slice-status';
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', () => options.onClick());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        options.onClick();
      }
    });
  }

  render(): JSX.Element {
    return <SliceLabel {...this._options} />;
  }

  private _options: { model: SliceStatusModel; trans: TranslationBundle };
}

function SliceLabel(props: {
  model: SliceStatusModel;
  trans: TranslationBundle;
}): JSX.Element | null {
  const { model, trans } = props;
  useSignal(model.changed);
  const status = model.status;
  if (!status) {
    return null;
  }
  const stale = model.error !== null;
  const warning = idleWarning(status);
  const idle = !warning
    ? 'no'
    : warning.stopsInMinutes === null
      ? 'idle'
      : 'stopping';
  return (
    <span
      className={
        // The status bar's own text class: its font, and its colour when clicked.
        'jp-StatusBar-TextItem jp-AIConsole-sliceLabel' +
        (stale ? ' jp-AIConsole-stale' : '') +
        (warning ? ' jp-AIConsole-idle' : '') +
        (idle === 'stopping' ? ' jp-AIConsole-stopping' : '')
      }
      data-testid="ai-console-slice-label"
      data-stale={stale ? 'true' : 'false'}
      data-idle={idle}
      title={sliceTitle(status, model.error, trans)}
    >
      {sliceLabel(status, trans)}
    </span>
  );
}

/** The detail panel shown in the status bar's popup. */
export class SliceStatusPanel extends ReactWidget {
  constructor(options: {
    model: SliceStatusModel;
    trans: TranslationBundle;
    openJobs: () => void;
  }) {
    super();
    this._options = options;
    this.addClass('jp-AIConsole-slicePanel');
    this.node.dataset.testid = 'ai-console-slice-panel';
  }

  render(): JSX.Element {
    return <SliceDetails {...this._options} />;
  }

  private _options: {
    model: SliceStatusModel;
    trans: TranslationBundle;
    openJobs: () => void;
  };
}

function SliceDetails(props: {
  model: SliceStatusModel;
  trans: TranslationBundle;
  openJobs: () => void;
}): JSX.Element {
  const { model, trans, openJobs } = props;
  useSignal(model.changed);
  const status = model.status;
  const warning = idleWarning(status);
  return (
    <div className="jp-AIConsole-sliceDetails">
      <h3 className="jp-AIConsole-sliceHeading">{trans.__('GPU slice')}</h3>
      {warning ? (
        <p
          className={
            'jp-AIConsole-sliceNote jp-AIConsole-idleNote' +
            (warning.stopsInMinutes !== null ? ' jp-AIConsole-stopping' : '')
          }
          data-testid="ai-console-slice-idle-warning"
          role="alert"
        >
          {idleMessage(warning, trans)}
        </p>
      ) : null}
      {status ? (
        <table className="jp-AIConsole-sliceTable">
          <tbody>
            {detailRows(status, trans).map(row => (
              <tr key={row.key} data-testid={`ai-console-slice-${row.key}`}>
                <th scope="row">{row.label}</th>
                <td>{row.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p>{trans.__('Loading…')}</p>
      )}
      {status?.gpu?.simulated ? (
        <p className="jp-AIConsole-sliceNote">
          {trans.__(
            'This GPU is simulated: your code runs on the CPU and nothing is measured.'
          )}
        </p>
      ) : null}
      {status?.gpu && !status.gpu.simulated ? (
        <p className="jp-AIConsole-sliceNote">
          {trans.__(
            'Memory used and utilisation are those of this server’s kernels and terminals.'
          )}
        </p>
      ) : null}
      {model.error ? (
        <p
          className="jp-AIConsole-sliceNote jp-AIConsole-stale"
          data-testid="ai-console-slice-error"
        >
          {trans.__('Not updated: %1', model.error)}
        </p>
      ) : null}
      <button
        className="jp-mod-styled jp-mod-accept jp-AIConsole-sliceJobs"
        data-testid="ai-console-slice-open-jobs"
        onClick={openJobs}
      >
        {trans.__('Open the Jobs panel')}
      </button>
    </div>
  );
}

/**
 * Warns with a notification when the hub starts counting down to stopping the
 * idle server: once per countdown, not at every poll, and again for a new
 * countdown after the user was busy. The notification goes away when the
 * countdown ends (the server is in use again).
 */
export class IdleNotifier implements IDisposable {
  constructor(options: { model: SliceStatusModel; trans: TranslationBundle }) {
    this._model = options.model;
    this._trans = options.trans;
    this._model.changed.connect(this._onChanged, this);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._model.changed.disconnect(this._onChanged, this);
  }

  private _onChanged(): void {
    const status = this._model.status;
    const notice = nextIdleNotice(this._stopsIn, status);
    this._stopsIn = notice.stopsIn;
    if ((notice.notify || notice.dismiss) && this._id !== null) {
      Notification.dismiss(this._id);
      this._id = null;
    }
    const warning = idleWarning(status);
    if (notice.notify && warning) {
      this._id = Notification.warning(idleMessage(warning, this._trans), {
        autoClose: false
      });
    }
  }

  private _model: SliceStatusModel;
  private _trans: TranslationBundle;
  private _stopsIn: number | null = null;
  private _id: string | null = null;
  private _isDisposed = false;
}
