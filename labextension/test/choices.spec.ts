import { describe, expect, it } from 'vitest';

import {
  ANY_GPU_TYPE,
  anyGpuTypeLabel,
  availableNow,
  defaultGpuType,
  defaultImage,
  defaultProject,
  flavorAvailability,
  flavorLabel,
  flavorResources,
  flavorsFor,
  gpuTypeLabel,
  gpuTypeMissing,
  gpuTypeOptions,
  imagesFor,
  isGpuFlavor,
  memoryText,
  needsProjectChoice,
  offersAnyGpuType,
  requestedGpuType,
  storageNote
} from '../src/choices';
import type { IChoices, IFlavor, IImage } from '../src/types';
import { trans } from './translation';

const quarter: IFlavor = {
  name: '4C-16G-1/4GPU',
  display_name: 'Quarter GPU',
  cpu: 4,
  memory: '16G',
  gpu: { fraction: '1/4' },
  gpu_types: ['A100', 'RTX3090'],
  projects: ['nlp', 'vision'],
  available: { A100: 3, RTX3090: 0 }
};

const whole: IFlavor = {
  name: '8C-64G-1GPU',
  display_name: 'Whole GPU',
  cpu: 8,
  memory: '64G',
  gpu: {},
  gpu_types: ['RTX3090', 'A100'],
  projects: ['vision'],
  available: { RTX3090: 1, A100: 2 }
};

/** A flavor of two types a job may leave to the allocator (types: [...]). */
const either: IFlavor = {
  name: '4C-16G-1/2GPU',
  display_name: 'Half of any big GPU',
  cpu: 4,
  memory: '16G',
  gpu: { fraction: '1/2', any_type: true, min_memory_mib: 16384 },
  gpu_types: ['V100', 'A10'],
  projects: ['vision'],
  available: { V100: 1, A10: 2 }
};

const cpuOnly: IFlavor = {
  name: '2C-8G',
  display_name: 'CPU',
  cpu: 2,
  memory: '8G',
  gpu: null,
  gpu_types: [],
  projects: ['nlp', 'vision', 'stats'],
  available: {}
};

const images: IImage[] = [
  { key: 'base', display_name: 'Base', projects: [] },
  { key: 'torch', display_name: 'PyTorch', projects: ['vision'] },
  { key: 'jax', display_name: 'JAX', projects: ['nlp'] }
];

function choices(extra: Partial<IChoices> = {}): IChoices {
  return {
    projects: [
      { slug: 'stats', display_name: 'Statistics' },
      { slug: 'nlp', display_name: 'NLP' },
      { slug: 'vision', display_name: 'Vision' }
    ],
    flavors: [quarter, whole, cpuOnly],
    images,
    default_image: 'torch',
    output_formats: ['ipynb', 'html'],
    max_timeout_seconds: 86400,
    max_retries: 3,
    ...extra
  };
}

const names = (flavors: IFlavor[]) => flavors.map(f => f.name);
const keys = (list: IImage[]) => list.map(i => i.key);

describe('projects', () => {
  it('asks for a project only when there is more than one', () => {
    expect(needsProjectChoice(choices())).toBe(true);
    expect(
      needsProjectChoice(
        choices({ projects: [{ slug: 'nlp', display_name: 'NLP' }] })
      )
    ).toBe(false);
    expect(needsProjectChoice(choices({ projects: [] }))).toBe(false);
  });

  it('preselects the first project that has a flavor', () => {
    const c = choices({ flavors: [quarter, whole] }); // none for stats
    expect(defaultProject(c)).toBe('nlp');
  });

  it('preselects the first project when none has a flavor', () => {
    expect(defaultProject(choices({ flavors: [] }))).toBe('stats');
  });

  it('preselects nothing without projects', () => {
    expect(defaultProject(choices({ projects: [] }))).toBe('');
  });
});

describe('flavorsFor', () => {
  it("offers only the project's flavors", () => {
    expect(names(flavorsFor(choices(), 'vision'))).toEqual([
      '4C-16G-1/4GPU',
      '8C-64G-1GPU',
      '2C-8G'
    ]);
    expect(names(flavorsFor(choices(), 'nlp'))).toEqual([
      '4C-16G-1/4GPU',
      '2C-8G'
    ]);
    expect(names(flavorsFor(choices(), 'stats'))).toEqual(['2C-8G']);
    expect(flavorsFor(choices(), 'unknown')).toEqual([]);
  });

  it('offers every flavor when no project is chosen or the user has none', () => {
    expect(flavorsFor(choices(), '')).toHaveLength(3);
    expect(flavorsFor(choices({ projects: [] }), 'nlp')).toHaveLength(3);
  });
});

describe('images', () => {
  it("offers the project's images and everyone's", () => {
    expect(keys(imagesFor(choices(), 'vision'))).toEqual(['base', 'torch']);
    expect(keys(imagesFor(choices(), 'nlp'))).toEqual(['base', 'jax']);
    expect(keys(imagesFor(choices(), 'stats'))).toEqual(['base']);
    expect(keys(imagesFor(choices(), ''))).toEqual(['base', 'torch', 'jax']);
  });

  it("preselects the user's server image when the project may use it", () => {
    expect(defaultImage(choices(), 'vision')).toBe('torch');
    expect(defaultImage(choices(), '')).toBe('torch');
  });

  it('preselects the first image otherwise', () => {
    expect(defaultImage(choices(), 'nlp')).toBe('base');
    expect(defaultImage(choices({ default_image: null }), 'vision')).toBe(
      'base'
    );
    expect(defaultImage(choices({ default_image: 'gone' }), 'vision')).toBe(
      'base'
    );
  });

  it('preselects nothing when there is no image', () => {
    expect(defaultImage(choices({ images: [] }), 'nlp')).toBe('');
  });
});

describe('GPU types', () => {
  it('tells GPU flavors from CPU ones', () => {
    expect(isGpuFlavor(quarter)).toBe(true);
    expect(isGpuFlavor(whole)).toBe(true);
    expect(isGpuFlavor(cpuOnly)).toBe(false);
    expect(isGpuFlavor(undefined)).toBe(false);
    expect(isGpuFlavor({ ...quarter, gpu_types: [] })).toBe(false);
  });

  it('preselects the GPU type where most jobs could start now', () => {
    expect(defaultGpuType(quarter)).toBe('A100');
    expect(defaultGpuType(whole)).toBe('A100');
    expect(
      defaultGpuType({ ...quarter, available: { A100: 0, RTX3090: 5 } })
    ).toBe('RTX3090');
  });

  it('preselects the first listed type on a tie or without counts', () => {
    expect(
      defaultGpuType({ ...whole, available: { RTX3090: 2, A100: 2 } })
    ).toBe('RTX3090');
    expect(defaultGpuType({ ...whole, available: {} })).toBe('RTX3090');
  });

  it('preselects no GPU type for a CPU flavor', () => {
    expect(defaultGpuType(cpuOnly)).toBe('');
    expect(defaultGpuType(undefined)).toBe('');
  });
});

describe('any of the GPU types', () => {
  it('is offered, and preselected, when a job may name no type', () => {
    expect(offersAnyGpuType(either)).toBe(true);
    expect(defaultGpuType(either)).toBe(ANY_GPU_TYPE);
    expect(anyGpuTypeLabel(either, trans)).toBe(
      'Any of them (placed where it fits best; can start now: 3)'
    );
  });

  it('is not offered for one type, a CPU flavor or a hub that does not take it', () => {
    expect(offersAnyGpuType({ ...either, gpu_types: ['A10'] })).toBe(false);
    expect(defaultGpuType({ ...either, gpu_types: ['A10'] })).toBe('A10');
    expect(offersAnyGpuType(cpuOnly)).toBe(false);
    expect(offersAnyGpuType(undefined)).toBe(false);
    // An older hub sends no any_type: a type must be picked, as before.
    expect(offersAnyGpuType(quarter)).toBe(false);
    expect(defaultGpuType(quarter)).toBe('A100');
  });

  it('comes first in the GPU type choice, and sends no type', () => {
    expect(gpuTypeOptions(either, trans)).toEqual([
      {
        value: ANY_GPU_TYPE,
        label: 'Any of them (placed where it fits best; can start now: 3)'
      },
      { value: 'V100', label: 'V100 (can start now: 1)' },
      { value: 'A10', label: 'A10 (can start now: 2)' }
    ]);
    expect(requestedGpuType(either, ANY_GPU_TYPE)).toBeUndefined();
    expect(requestedGpuType(either, 'A10')).toBe('A10');
    expect(gpuTypeMissing(either, ANY_GPU_TYPE)).toBe(false);
  });

  it('is not a choice where the flavor takes one type or the hub wants one', () => {
    expect(gpuTypeOptions(quarter, trans).map(o => o.value)).toEqual([
      'A100',
      'RTX3090'
    ]);
    expect(gpuTypeMissing(quarter, '')).toBe(true);
    expect(gpuTypeMissing(quarter, 'A100')).toBe(false);
    expect(requestedGpuType(quarter, 'A100')).toBe('A100');
    expect(requestedGpuType(cpuOnly, '')).toBeUndefined();
    expect(gpuTypeMissing(cpuOnly, '')).toBe(false);
  });

  it('names the least GPU memory of the flavor', () => {
    expect(flavorResources(either, trans)).toBe(
      '4 CPU · 16G · 1/2 GPU (16 GiB or more)'
    );
    expect(memoryText(16384)).toBe('16 GiB');
    expect(memoryText(1536)).toBe('1.5 GiB');
    expect(memoryText(512)).toBe('512 MiB');
  });
});

describe('availableNow', () => {
  it('adds up the jobs that could start on every GPU type', () => {
    expect(availableNow(quarter)).toBe(3);
    expect(availableNow(whole)).toBe(3);
    expect(
      availableNow({ ...quarter, available: { A100: 0, RTX3090: 0 } })
    ).toBe(0);
    expect(availableNow(cpuOnly)).toBe(0);
  });
});

describe('flavor texts', () => {
  it('describes CPU, memory and GPU slice', () => {
    expect(flavorResources(quarter, trans)).toBe('4 CPU · 16G · 1/4 GPU');
    expect(flavorResources(cpuOnly, trans)).toBe('2 CPU · 8G');
  });

  it('shows a whole GPU when the flavor gives no fraction', () => {
    expect(flavorResources(whole, trans)).toBe('8 CPU · 64G · 1 GPU');
  });

  it('prints fractional CPUs', () => {
    expect(flavorResources({ ...cpuOnly, cpu: 0.5 }, trans)).toBe(
      '0.5 CPU · 8G'
    );
  });

  it('says how many could start now, per GPU type, in the listed order', () => {
    expect(flavorAvailability(quarter, trans)).toBe(
      'can start now: A100: 3, RTX3090: 0'
    );
    expect(flavorAvailability({ ...quarter, available: {} }, trans)).toBe(
      'can start now: A100: 0, RTX3090: 0'
    );
    expect(flavorAvailability(cpuOnly, trans)).toBe('');
  });

  it('labels a flavor option', () => {
    expect(flavorLabel(quarter, trans)).toBe(
      'Quarter GPU (4 CPU · 16G · 1/4 GPU; can start now: A100: 3, RTX3090: 0)'
    );
    expect(flavorLabel(cpuOnly, trans)).toBe('CPU (2 CPU · 8G)');
  });

  it('labels a GPU type option with its count', () => {
    expect(gpuTypeLabel(quarter, 'A100', trans)).toBe(
      'A100 (can start now: 3)'
    );
    expect(gpuTypeLabel(quarter, 'RTX3090', trans)).toBe(
      'RTX3090 (can start now: 0)'
    );
    expect(gpuTypeLabel(quarter, 'H100', trans)).toBe(
      'H100 (can start now: 0)'
    );
  });
});

describe('storageNote', () => {
  const base: IChoices = {
    projects: [],
    flavors: [],
    images: [],
    default_image: null,
    output_formats: ['ipynb'],
    max_timeout_seconds: 3600,
    max_retries: 0
  };

  it('says nothing when every node can mount the home folder', () => {
    expect(storageNote(base, trans)).toBeNull();
    expect(
      storageNote(
        { ...base, storage: { shared: true, node: null, blocked: null } },
        trans
      )
    ).toBeNull();
  });

  it('names the node the job runs on next to the server', () => {
    const note = storageNote(
      { ...base, storage: { shared: false, node: 'gpu-07', blocked: null } },
      trans
    );
    expect(note).toContain('runs on node gpu-07');
  });

  it('tells the user to stop the server when the volume is one pod only', () => {
    const note = storageNote(
      {
        ...base,
        storage: { shared: false, node: 'gpu-07', blocked: 'in use' }
      },
      trans
    );
    expect(note).toContain('stop your server');
  });

  it('warns that the server must share the node while the job runs', () => {
    const note = storageNote(
      { ...base, storage: { shared: false, node: null, blocked: null } },
      trans
    );
    expect(note).toContain('only on the same node');
  });
});
