/**
 * What the Run-as-job dialog offers, derived from `GET flavors` (`Choices`):
 * the flavors and images of a project, the default GPU type, and the labels.
 */
import type { TranslationBundle } from '@jupyterlab/translation';

import type { IChoices, IFlavor, IImage } from './types';

/** Whether the user must pick a project (more than one to choose from). */
export function needsProjectChoice(choices: IChoices): boolean {
  return choices.projects.length > 1;
}

/** The project preselected: the first one with a flavor, else the first. */
export function defaultProject(choices: IChoices): string {
  const withFlavor = choices.projects.find(
    project => flavorsFor(choices, project.slug).length > 0
  );
  return (withFlavor ?? choices.projects[0])?.slug ?? '';
}

/** The flavors of a project (every flavor when the user has no project). */
export function flavorsFor(choices: IChoices, project: string): IFlavor[] {
  if (!project || choices.projects.length === 0) {
    return choices.flavors;
  }
  return choices.flavors.filter(flavor => flavor.projects.includes(project));
}

/** The images of a project; an image that names no project is everyone's. */
export function imagesFor(choices: IChoices, project: string): IImage[] {
  if (!project) {
    return choices.images;
  }
  return choices.images.filter(
    image => image.projects.length === 0 || image.projects.includes(project)
  );
}

/** The image preselected: the server's own when allowed, else the first. */
export function defaultImage(choices: IChoices, project: string): string {
  const images = imagesFor(choices, project);
  if (
    choices.default_image &&
    images.some(i => i.key === choices.default_image)
  ) {
    return choices.default_image;
  }
  return images[0]?.key ?? '';
}

/** Whether the flavor has a GPU (so a GPU type is chosen). */
export function isGpuFlavor(flavor: IFlavor | undefined): boolean {
  return !!flavor && flavor.gpu !== null && flavor.gpu_types.length > 0;
}

/**
 * The GPU type value of "Any of them": the job names no type and the hub's
 * allocator places it on the type where it fits best.
 */
export const ANY_GPU_TYPE = '';

/** Whether a job of the flavor may leave the GPU type to the allocator. */
export function offersAnyGpuType(flavor: IFlavor | undefined): boolean {
  return (
    isGpuFlavor(flavor) &&
    flavor!.gpu!.any_type === true &&
    flavor!.gpu_types.length > 1
  );
}

/**
 * The GPU type preselected: "Any of them" where the flavor offers it, else
 * the one where most jobs could start now.
 */
export function defaultGpuType(flavor: IFlavor | undefined): string {
  if (!isGpuFlavor(flavor) || offersAnyGpuType(flavor)) {
    return ANY_GPU_TYPE;
  }
  let best = flavor!.gpu_types[0];
  for (const type of flavor!.gpu_types) {
    if ((flavor!.available[type] ?? 0) > (flavor!.available[best] ?? 0)) {
      best = type;
    }
  }
  return best;
}

/** How many jobs of this flavor could start now, over all GPU types. */
export function availableNow(flavor: IFlavor): number {
  return Object.values(flavor.available).reduce((sum, n) => sum + n, 0);
}

/** "4 CPU · 16G · 1/4 GPU", "4 CPU · 16G · 1/4 GPU (16 GiB or more)" */
export function flavorResources(
  flavor: IFlavor,
  trans: TranslationBundle
): string {
  const parts = [trans.__('%1 CPU', flavor.cpu), flavor.memory];
  if (flavor.gpu) {
    const fraction = flavor.gpu.fraction ?? '1';
    const minimum = flavor.gpu.min_memory_mib;
    parts.push(
      minimum
        ? trans.__('%1 GPU (%2 or more)', fraction, memoryText(minimum))
        : trans.__('%1 GPU', fraction)
    );
  }
  return parts.join(' · ');
}

/** "16 GiB", "1.5 GiB", "512 MiB" */
export function memoryText(mib: number): string {
  if (mib < 1024) {
    return `${mib} MiB`;
  }
  const gib = mib / 1024;
  return `${Number.isInteger(gib) ? gib : gib.toFixed(1)} GiB`;
}

/** "A100: 3, RTX3090: 0" (jobs that could start now, per GPU type). */
export function flavorAvailability(
  flavor: IFlavor,
  trans: TranslationBundle
): string {
  if (!isGpuFlavor(flavor)) {
    return '';
  }
  const counts = flavor.gpu_types.map(type =>
    trans.__('%1: %2', type, flavor.available[type] ?? 0)
  );
  return trans.__('can start now: %1', counts.join(', '));
}

/** The option text of a flavor. */
export function flavorLabel(flavor: IFlavor, trans: TranslationBundle): string {
  const availability = flavorAvailability(flavor, trans);
  const resources = flavorResources(flavor, trans);
  return availability
    ? trans.__('%1 (%2; %3)', flavor.display_name, resources, availability)
    : trans.__('%1 (%2)', flavor.display_name, resources);
}

/** The option text of a GPU type of a flavor. */
export function gpuTypeLabel(
  flavor: IFlavor,
  type: string,
  trans: TranslationBundle
): string {
  return trans.__('%1 (can start now: %2)', type, flavor.available[type] ?? 0);
}

/** The option text of "Any of them", with the count over all its types. */
export function anyGpuTypeLabel(
  flavor: IFlavor,
  trans: TranslationBundle
): string {
  return trans.__(
    'Any of them (placed where it fits best; can start now: %1)',
    availableNow(flavor)
  );
}

/** One option of the dialog's GPU type choice. */
export interface IGpuTypeOption {
  /** The type sent as `gpu_type`, or ANY_GPU_TYPE (none sent). */
  value: string;
  label: string;
}

/**
 * The GPU type choices of a flavor: "Any of them" first where the flavor
 * offers it, then each type with how many jobs could start on it now.
 */
export function gpuTypeOptions(
  flavor: IFlavor,
  trans: TranslationBundle
): IGpuTypeOption[] {
  const types = flavor.gpu_types.map(type => ({
    value: type,
    label: gpuTypeLabel(flavor, type, trans)
  }));
  if (!offersAnyGpuType(flavor)) {
    return types;
  }
  return [
    { value: ANY_GPU_TYPE, label: anyGpuTypeLabel(flavor, trans) },
    ...types
  ];
}

/**
 * The `gpu_type` a job of the flavor sends for the chosen value: none for a
 * CPU flavor and for "Any of them" (the allocator chooses).
 */
export function requestedGpuType(
  flavor: IFlavor | undefined,
  chosen: string
): string | undefined {
  return isGpuFlavor(flavor) && chosen !== ANY_GPU_TYPE ? chosen : undefined;
}

/** Whether the flavor needs a GPU type that has not been chosen. */
export function gpuTypeMissing(
  flavor: IFlavor | undefined,
  chosen: string
): boolean {
  return isGpuFlavor(flavor) && !offersAnyGpuType(flavor) && !chosen;
}

/** What the dialog says about where the job can reach the user's storage, or null. */
export function storageNote(
  choices: IChoices,
  trans: TranslationBundle
): string | null {
  const storage = choices.storage;
  if (!storage || storage.shared) {
    return null;
  }
  if (storage.blocked) {
    return trans.__(
      'Your home folder can be used by one pod at a time and your server has it: stop your server, then run the job.'
    );
  }
  if (storage.node) {
    return trans.__(
      'Your home folder can be attached to one node at a time and your server holds it: this job runs on node %1, next to your server.',
      storage.node
    );
  }
  return trans.__(
    'Your home folder can be attached to one node at a time: while this job runs, your server can start only on the same node.'
  );
}
