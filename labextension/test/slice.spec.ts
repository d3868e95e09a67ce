import { describe, expect, it } from 'vitest';

import {
  detailRows,
  formatGiB,
  idleMessage,
  idleWarning,
  isFractionalShare,
  memoryText,
  nextIdleNotice,
  shareText,
  sliceLabel,
  sliceTitle,
  utilizationText
} from '../src/slice';
import type { ISliceGpu, ISliceStatus } from '../src/types';
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

  it('says who read the figures: NVML here, or the node agent', () => {
    const read = (from: 'nvml' | 'node agent') =>
      values(detailRows({ gpu: gpu({ readings_from: from }) }, trans))[
        'readings-from'
      ];
    expect(read('nvml')).toBe('this server (NVML)');
    expect(read('node agent')).toBe('the node agent (updated every 15 s)');
    expect(values(detailRows({ gpu: gpu() }, trans))).not.toHaveProperty(
      'readings-from'
    );
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

/** A slice the hub finds idle for `idle` minutes, stopped in `stops` minutes. */
function idleSlice(
  idle: number | null,
  stops: number | null,
  extra: Partial<ISliceGpu> = {}
): ISliceStatus {
  return {
    gpu: gpu(extra),
    idle: { idle_minutes: idle, stops_in_minutes: stops }
  };
}

describe('idle slices', () => {
  const simulated = {
    simulated: true,
    memory_used_mib: null,
    utilization_percent: null,
    devices: []
  };

  it('say how long they have been idle', () => {
    expect(sliceLabel(idleSlice(42, null), trans)).toBe(
      'RTX3090 · 1/4 · 1.2/6.0 GiB · 35% · idle 42 min'
    );
    expect(sliceLabel(idleSlice(42, null, simulated), trans)).toBe(
      'RTX3090 · 1/4 (simulated) · idle 42 min'
    );
  });

  it('count down when the hub will stop the server', () => {
    expect(sliceLabel(idleSlice(42, 8, simulated), trans)).toBe(
      'RTX3090 · 1/4 (simulated) · stops in 8 min'
    );
    expect(sliceLabel(idleSlice(50, 0, simulated), trans)).toBe(
      'RTX3090 · 1/4 (simulated) · stopping now'
    );
  });

  it('show nothing when busy, unknown or without a GPU', () => {
    const plain = 'RTX3090 · 1/4 · 1.2/6.0 GiB · 35%';
    expect(sliceLabel(idleSlice(null, null), trans)).toBe(plain);
    expect(sliceLabel({ gpu: gpu(), idle: null }, trans)).toBe(plain);
    expect(sliceLabel({ gpu: gpu() }, trans)).toBe(plain);
    // A countdown counts only for a slice the hub finds idle.
    expect(idleWarning(idleSlice(null, 8))).toBeNull();
    expect(
      idleWarning({
        gpu: null,
        idle: { idle_minutes: 42, stops_in_minutes: 8 }
      })
    ).toBeNull();
    expect(idleWarning(null)).toBeNull();
  });

  it('explain the countdown in the notification, the panel and the tooltip', () => {
    const message =
      'Your GPU server has been idle for 42 minutes and will be stopped in 8 minutes to free the GPU for others. Use the GPU to keep it.';
    const warning = idleWarning(idleSlice(42, 8));
    expect(warning).toEqual({ idleMinutes: 42, stopsInMinutes: 8 });
    expect(idleMessage(warning!, trans)).toBe(message);
    expect(sliceTitle(idleSlice(42, 8), null, trans)).toBe(message);
    expect(
      idleMessage({ idleMinutes: 30, stopsInMinutes: 1 }, trans)
    ).toContain('will be stopped in 1 minute to');
    expect(idleMessage({ idleMinutes: 60, stopsInMinutes: 0 }, trans)).toBe(
      'Your GPU server has been idle for 60 minutes and will be stopped any moment now to free the GPU for others. Use the GPU to keep it.'
    );
    expect(idleMessage({ idleMinutes: 42, stopsInMinutes: null }, trans)).toBe(
      'Your GPU server has been idle for 42 minutes. Stop it when you are done to free the GPU for others.'
    );
    const rows = Object.fromEntries(
      detailRows(idleSlice(42, 8), trans).map(row => [row.key, row.value])
    );
    expect(rows.idle).toBe('42 minutes');
    expect(rows['stops-in']).toBe('8 minutes');
    expect(
      detailRows(idleSlice(42, null), trans).map(row => row.key)
    ).not.toContain('stops-in');
    expect(detailRows(idleSlice(null, null), trans).map(r => r.key)).toEqual(
      detailRows({ gpu: gpu() }, trans).map(r => r.key)
    );
  });

  it('keep the notification within what JupyterLab shows (140 characters)', () => {
    for (const [idle, stops] of [
      [999, 99],
      [999, 0],
      [999, null]
    ] as const) {
      const text = idleMessage(
        { idleMinutes: idle, stopsInMinutes: stops },
        trans
      );
      expect(text.length).toBeLessThanOrEqual(140);
    }
  });
});

describe('nextIdleNotice', () => {
  /** Runs the polls' answers through, returning when it notified or dismissed. */
  function run(answers: (ISliceStatus | null)[]): string[] {
    let stopsIn: number | null = null;
    return answers.map(answer => {
      const notice = nextIdleNotice(stopsIn, answer);
      stopsIn = notice.stopsIn;
      return notice.notify ? 'notify' : notice.dismiss ? 'dismiss' : '';
    });
  }

  it('notifies once per countdown, not at every poll', () => {
    expect(
      run([
        idleSlice(null, null),
        idleSlice(40, null),
        idleSlice(42, 8),
        idleSlice(42, 8),
        idleSlice(43, 7),
        idleSlice(49, 1),
        idleSlice(50, 0)
      ])
    ).toEqual(['', '', 'notify', '', '', '', '']);
  });

  it('notifies again after the user was busy and idle again', () => {
    expect(
      run([
        idleSlice(42, 8),
        idleSlice(43, 7),
        idleSlice(null, null),
        idleSlice(40, 10),
        idleSlice(41, 9)
      ])
    ).toEqual(['notify', '', 'dismiss', 'notify', '']);
  });

  it('notifies again for a countdown that started over unseen', () => {
    // Busy between two polls of the hub: the countdown is back to its start.
    expect(run([idleSlice(48, 2), idleSlice(40, 10)])).toEqual([
      'notify',
      'notify'
    ]);
  });

  it('changes nothing while the hub does not answer', () => {
    const unknown: ISliceStatus = { gpu: gpu(), idle: null };
    expect(
      run([idleSlice(42, 8), unknown, null, { gpu: gpu() }, idleSlice(43, 7)])
    ).toEqual(['notify', '', '', '', '']);
  });

  it('ends the countdown when the hub no longer stops the server', () => {
    expect(run([idleSlice(42, 8), idleSlice(43, null)])).toEqual([
      'notify',
      'dismiss'
    ]);
  });
});
