/**
 * How the server's GPU slice is shown: the status bar label
 * ("RTX3090 · 1/4 · 1.2/6.0 GiB · 35%") and the rows of its detail panel.
 * Pure functions of the `GET slice` answer; unknown readings are left out of
 * the label and said to be unknown in the panel, never shown as 0.
 *
 * When the hub finds the slice idle the label says so ("· idle 42 min"), or,
 * when the hub will stop the server for it, counts down ("· stops in 8 min");
 * {@link nextIdleNotice} decides when to warn the user with a notification.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { ISliceGpu, ISliceStatus } from './types';

/** The hub finds the slice idle: for how long, and when it stops the server. */
export interface IIdleWarning {
  idleMinutes: number;
  /** null: the hub will not stop the server; 0: any moment now. */
  stopsInMinutes: number | null;
}

function minutes(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value)
    ? Math.max(0, Math.floor(value))
    : null;
}

/**
 * The warning to show, or null: no GPU, the hub's verdict unknown, or the
 * slice not idle. A countdown counts only for an idle slice.
 */
export function idleWarning(status: ISliceStatus | null): IIdleWarning | null {
  const idle = status?.gpu ? status.idle : null;
  const idleMinutes = minutes(idle?.idle_minutes);
  if (!idle || idleMinutes === null) {
    return null;
  }
  return { idleMinutes, stopsInMinutes: minutes(idle.stops_in_minutes) };
}

/** "1 minute", "42 minutes". */
export function minutesText(value: number, trans: TranslationBundle): string {
  return value === 1 ? trans.__('1 minute') : trans.__('%1 minutes', value);
}

/** The label's part for the warning: "idle 42 min", "stops in 8 min". */
export function idleText(
  warning: IIdleWarning,
  trans: TranslationBundle
): string {
  const stops = warning.stopsInMinutes;
  if (stops === null) {
    return trans.__('idle %1 min', warning.idleMinutes);
  }
  return stops === 0
    ? trans.__('stopping now')
    : trans.__('stops in %1 min', stops);
}

/**
 * What the notification (and the panel) says. Kept under the 140 characters
 * a JupyterLab notification shows.
 */
export function idleMessage(
  warning: IIdleWarning,
  trans: TranslationBundle
): string {
  const idle = minutesText(warning.idleMinutes, trans);
  const stops = warning.stopsInMinutes;
  if (stops === null) {
    return trans.__(
      'Your GPU server has been idle for %1. Stop it when you are done to free the GPU for others.',
      idle
    );
  }
  if (stops === 0) {
    return trans.__(
      'Your GPU server has been idle for %1 and will be stopped any moment now to free the GPU for others. Use the GPU to keep it.',
      idle
    );
  }
  return trans.__(
    'Your GPU server has been idle for %1 and will be stopped in %2 to free the GPU for others. Use the GPU to keep it.',
    idle,
    minutesText(stops, trans)
  );
}

/** What to do about the notification after a poll. */
export interface IIdleNotice {
  /** The countdown now (minutes), to pass to the next call; null: none. */
  stopsIn: number | null;
  /** Show the notification (a new countdown began). */
  notify: boolean;
  /** Take the notification down (the countdown ended: busy again, or no cull). */
  dismiss: boolean;
}

/**
 * Whether a poll's answer starts a countdown to warn about, once per
 * countdown: `previous` is the countdown seen so far (null: none). A
 * countdown that starts over (longer than the one seen: the user was busy in
 * between) is warned about again. An unknown verdict (the hub did not answer)
 * changes nothing.
 */
export function nextIdleNotice(
  previous: number | null,
  status: ISliceStatus | null
): IIdleNotice {
  if (!status?.gpu || !status.idle) {
    return { stopsIn: previous, notify: false, dismiss: false };
  }
  const stops = idleWarning(status)?.stopsInMinutes ?? null;
  if (stops === null) {
    return { stopsIn: null, notify: false, dismiss: previous !== null };
  }
  const fresh = previous === null || stops > previous;
  return { stopsIn: stops, notify: fresh, dismiss: false };
}

/** MiB as GiB with one decimal: 6144 -> "6.0", 1229 -> "1.2". */
export function formatGiB(mib: number): string {
  return (Math.max(0, mib) / 1024).toFixed(1);
}

/** Whether a share names a part of one GPU ("1/4", "0.5") rather than whole GPUs. */
export function isFractionalShare(share: string): boolean {
  if (share.includes('/')) {
    const [num, den] = share.split('/').map(Number);
    return den > 0 && num / den < 1;
  }
  const value = Number(share);
  return Number.isFinite(value) && value > 0 && value < 1;
}

/** The share as the label shows it: "1/4", "1 GPU", "2 GPUs". */
export function shareText(share: string, trans: TranslationBundle): string {
  if (isFractionalShare(share)) {
    return share;
  }
  return Number(share) === 1
    ? trans.__('%1 GPU', share)
    : trans.__('%1 GPUs', share);
}

/** "1.2/6.0 GiB", or '' when the use or the cap is unknown. */
export function memoryText(gpu: ISliceGpu, trans: TranslationBundle): string {
  if (gpu.memory_used_mib === null || gpu.memory_cap_mib === null) {
    return '';
  }
  return trans.__(
    '%1/%2 GiB',
    formatGiB(gpu.memory_used_mib),
    formatGiB(gpu.memory_cap_mib)
  );
}

/** "35%", or '' when unknown. */
export function utilizationText(gpu: ISliceGpu): string {
  const value = gpu.utilization_percent;
  return value === null || value === undefined ? '' : `${Math.round(value)}%`;
}

/** The status bar text: "CPU only", "RTX3090 · 1/4 (simulated)" or with readings. */
export function sliceLabel(
  status: ISliceStatus,
  trans: TranslationBundle
): string {
  const gpu = status.gpu;
  if (!gpu) {
    return trans.__('CPU only');
  }
  const share = shareText(gpu.share, trans);
  const warning = idleWarning(status);
  const idle = warning ? idleText(warning, trans) : '';
  const parts = gpu.simulated
    ? [trans.__('%1 · %2 (simulated)', gpu.type, share), idle]
    : [gpu.type, share, memoryText(gpu, trans), utilizationText(gpu), idle];
  return parts.filter(part => part).join(' · ');
}

/** One row of the detail panel. */
export interface IDetailRow {
  /** Stable key, also the row's `data-testid` suffix. */
  key: string;
  label: string;
  value: string;
}

/** The rows of the detail panel. */
export function detailRows(
  status: ISliceStatus,
  trans: TranslationBundle
): IDetailRow[] {
  const gpu = status.gpu;
  if (!gpu) {
    return [
      {
        key: 'gpu',
        label: trans.__('GPU'),
        value: trans.__('None: this server runs on CPU only')
      }
    ];
  }
  const unknown = gpu.simulated
    ? trans.__('not measured (simulated GPU)')
    : trans.__('unknown');
  const rows: IDetailRow[] = [
    { key: 'type', label: trans.__('GPU type'), value: gpu.type },
    {
      key: 'share',
      label: trans.__('Share'),
      value: isFractionalShare(gpu.share)
        ? trans.__('%1 of one GPU', gpu.share)
        : shareText(gpu.share, trans)
    }
  ];
  const cap =
    gpu.memory_cap_mib === null
      ? unknown
      : trans.__('%1 GiB', formatGiB(gpu.memory_cap_mib));
  rows.push({ key: 'memory-cap', label: trans.__('Memory cap'), value: cap });
  rows.push({
    key: 'memory-used',
    label: trans.__('Memory used'),
    value:
      gpu.memory_used_mib === null
        ? unknown
        : trans.__('%1 GiB', formatGiB(gpu.memory_used_mib))
  });
  const utilization = utilizationText(gpu);
  rows.push({
    key: 'utilization',
    label: trans.__('Utilisation'),
    value: utilization || unknown
  });
  if (gpu.readings_from) {
    rows.push({
      key: 'readings-from',
      label: trans.__('Read by'),
      value:
        gpu.readings_from === 'nvml'
          ? trans.__('this server (NVML)')
          : trans.__('the node agent (updated every 15 s)')
    });
  }
  const min = gpu.compute_min_percent;
  const max = gpu.compute_max_percent;
  if (typeof min === 'number' && typeof max === 'number') {
    rows.push({
      key: 'compute',
      label: trans.__('Compute'),
      value: trans.__('%1% guaranteed, up to %2%', min, max)
    });
  }
  const warning = idleWarning(status);
  if (warning) {
    rows.push({
      key: 'idle',
      label: trans.__('Idle for'),
      value: minutesText(warning.idleMinutes, trans)
    });
    if (warning.stopsInMinutes !== null) {
      rows.push({
        key: 'stops-in',
        label: trans.__('Stopped in'),
        value:
          warning.stopsInMinutes === 0
            ? trans.__('any moment now')
            : minutesText(warning.stopsInMinutes, trans)
      });
    }
  }
  gpu.devices.forEach((device, index) => {
    const name = device.name ?? gpu.type;
    rows.push({
      key: `device-${index}`,
      label: trans.__('Device %1', index + 1),
      value: device.uuid ? `${name} (${device.uuid})` : `${name} (${device.id})`
    });
  });
  return rows;
}

/** The tooltip of the status bar item. */
export function sliceTitle(
  status: ISliceStatus | null,
  error: string | null,
  trans: TranslationBundle
): string {
  const warning = idleWarning(status);
  const base = warning
    ? idleMessage(warning, trans)
    : status?.gpu
      ? trans.__('Your GPU slice: click for details')
      : trans.__('This server has no GPU: click for details');
  return error ? trans.__('%1 (not updated: %2)', base, error) : base;
}
