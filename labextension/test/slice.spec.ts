import { describe, expect, it } from 'vitest';

import {
  detailRows,
  formatGiB,
  isFractionalShare,
  memoryText,
  shareText,
  sliceLabel,
  sliceTitle,
  utilizationText
} from '../src/slice';
import type { ISliceGpu } from '../src/types';
import { trans } from './translation';

function gpu(extra: Partial<ISliceGpu> = {}): ISliceGpu {
  return {
    type: 'RTX3090',
    share: '1/4',
    memory_cap_mib: 6144,
    memory_used_mib: 1229,
    utilization_percent: 35,
    compute_min_percent: 25,
    compute_max_percent: 100,
    simulated: false,
    devices: [
      {
        id: 'GPU-3f2a',
        uuid: 'GPU-3f2a',
        name: 'NVIDIA GeForce RTX 3090',
        memory_total_mib: 24576,
        memory_used_mib: 1229,
        utilization_percent: 35
      }
    ],
    ...extra
  };
}

describe('formatGiB', () => {
  it.each([
    [6144, '6.0'],
    [1229, '1.2'],
    [0, '0.0'],
    [81920, '80.0'],
    [-5, '0.0']
  ])('%d MiB is %s GiB', (mib, text) => {
    expect(formatGiB(mib)).toBe(text);
  });
});

describe('shares', () => {
  it.each([
    ['1/4', true, '1/4'],
    ['1/2', true, '1/2'],
    ['0.25', true, '0.25'],
    ['1', false, '1 GPU'],
    ['2', false, '2 GPUs']
  ])('%s: fractional %s, shown as %s', (share, fractional, text) => {
    expect(isFractionalShare(share)).toBe(fractional);
    expect(shareText(share, trans)).toBe(text);
  });
});

describe('sliceLabel', () => {
  it('shows type, share, memory used of the cap and utilisation', () => {
    expect(sliceLabel({ gpu: gpu() }, trans)).toBe(
      'RTX3090 · 1/4 · 1.2/6.0 GiB · 35%'
    );
  });

  it('says simulated and shows no readings for a simulated GPU', () => {
    const simulated = gpu({
      simulated: true,
      memory_used_mib: null,
      utilization_percent: null,
      devices: []
    });
    expect(sliceLabel({ gpu: simulated }, trans)).toBe(
      'RTX3090 · 1/4 (simulated)'
    );
  });

  it('leaves unknown readings out rather than showing zero', () => {
    const unknown = gpu({ memory_used_mib: null, utilization_percent: null });
    expect(sliceLabel({ gpu: unknown }, trans)).toBe('RTX3090 · 1/4');
    expect(memoryText(unknown, trans)).toBe('');
    expect(utilizationText(unknown)).toBe('');
    const idle = gpu({ memory_used_mib: 0, utilization_percent: 0 });
    expect(sliceLabel({ gpu: idle }, trans)).toBe(
      'RTX3090 · 1/4 · 0.0/6.0 GiB · 0%'
    );
  });

  it('shows whole GPUs by count', () => {
    const whole = gpu({
      type: 'A100',
      share: '2',
      memory_cap_mib: 163840,
      memory_used_mib: 2048
    });
    expect(sliceLabel({ gpu: whole }, trans)).toBe(
      'A100 · 2 GPUs · 2.0/160.0 GiB · 35%'
    );
  });

  it('says CPU only without a GPU', () => {
    expect(sliceLabel({ gpu: null }, trans)).toBe('CPU only');
  });
});

describe('detailRows', () => {
  const values = (rows: ReturnType<typeof detailRows>) =>
    Object.fromEntries(rows.map(row => [row.key, row.value]));

  it('lists the slice, its readings and its devices', () => {
    expect(values(detailRows({ gpu: gpu() }, trans))).toEqual({
      type: 'RTX3090',
      share: '1/4 of one GPU',
      'memory-cap': '6.0 GiB',
      'memory-used': '1.2 GiB',
      utilization: '35%',
      compute: '25% guaranteed, up to 100%',
      'device-0': 'NVIDIA GeForce RTX 3090 (GPU-3f2a)'
    });
  });

  it('says a simulated GPU is not measured', () => {
    const rows = values(
      detailRows(
        {
          gpu: gpu({
            simulated: true,
            memory_used_mib: null,
            utilization_percent: null,
            devices: []
          })
        },
        trans
      )
    );
    expect(rows['memory-used']).toBe('not measured (simulated GPU)');
    expect(rows.utilization).toBe('not measured (simulated GPU)');
    expect(rows['memory-cap']).toBe('6.0 GiB');
    expect(Object.keys(rows)).not.toContain('device-0');
  });

  it('says unknown when a real GPU cannot be read', () => {
    const rows = values(
      detailRows(
        {
          gpu: gpu({
            memory_used_mib: null,
            utilization_percent: null,
            compute_min_percent: null,
            compute_max_percent: null,
            devices: [{ id: '0' }]
          })
        },
        trans
      )
    );
    expect(rows['memory-used']).toBe('unknown');
    expect(rows.utilization).toBe('unknown');
    expect(rows).not.toHaveProperty('compute');
    expect(rows['device-0']).toBe('RTX3090 (0)');
  });

  it('has one row for a CPU-only server', () => {
    expect(detailRows({ gpu: null }, trans)).toEqual([
      {
        key: 'gpu',
        label: 'GPU',
        value: 'None: this server runs on CPU only'
      }
    ]);
  });
});

describe('sliceTitle', () => {
  it('adds the error of a failed poll', () => {
    expect(sliceTitle({ gpu: gpu() }, null, trans)).toBe(
      'Your GPU slice: click for details'
    );
    expect(sliceTitle({ gpu: gpu() }, 'Network error', trans)).toBe(
      'Your GPU slice: click for details (not updated: Network error)'
    );
    expect(sliceTitle({ gpu: null }, null, trans)).toBe(
      'This server has no GPU: click for details'
    );
  });
});
