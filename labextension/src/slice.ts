/**
 * How the server's GPU slice is shown: the status bar label
 * ("RTX3090 · 1/4 · 1.2/6.0 GiB · 35%") and the rows of its detail panel.
 * Pure functions of the `GET slice` answer; unknown readings are left out of
 * the label and said to be unknown in the panel, never shown as 0.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { ISliceGpu, ISliceStatus } from './types';

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
  if (gpu.simulated) {
    return trans.__('%1 · %2 (simulated)', gpu.type, share);
  }
  return [gpu.type, share, memoryText(gpu, trans), utilizationText(gpu)]
    .filter(part => part)
    .join(' · ');
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
  const min = gpu.compute_min_percent;
  const max = gpu.compute_max_percent;
  if (typeof min === 'number' && typeof max === 'number') {
    rows.push({
      key: 'compute',
      label: trans.__('Compute'),
      value: trans.__('%1% guaranteed, up to %2%', min, max)
    });
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
  const base = status?.gpu
    ? trans.__('Your GPU slice: click for details')
    : trans.__('This server has no GPU: click for details');
  return error ? trans.__('%1 (not updated: %2)', base, error) : base;
}
