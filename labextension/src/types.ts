/**
 * Types mirroring the schemas of the server extension's REST API
 * (`server_extension/openapi.yaml`, the contract). Field names are the API's.
 */

/** `Status`: the lifecycle of a job, as the jobs service reports it. */
export type JobStatus =
  | 'CREATED'
  | 'QUEUED'
  | 'IN_PROGRESS'
  | 'COMPLETED'
  | 'FAILED'
  | 'STOPPING'
  | 'STOPPED';

/** Every status, in lifecycle order. */
export const JOB_STATUSES: readonly JobStatus[] = [
  'CREATED',
  'QUEUED',
  'IN_PROGRESS',
  'COMPLETED',
  'FAILED',
  'STOPPING',
  'STOPPED'
];

/** `ParameterType`. */
export type ParameterType = 'int' | 'float' | 'bool' | 'str' | 'list' | 'dict';

/** A JSON value, as parameters carry them. */
export type JSONValue =
  null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** `Parameter`: one assignment of the notebook's cell tagged `parameters`. */
export interface IParameter {
  name: string;
  type: ParameterType;
  value: JSONValue;
}

/** `Error`: the body of every 4xx answer. */
export interface IErrorBody {
  message: string;
  /** The request field at fault, or null for the request as a whole. */
  field?: string | null;
}

/** `Flavor`: a resource size the user may pick. */
export interface IFlavor {
  /** Key in the admin YAML, e.g. `4C-16G-1/4GPU`. */
  name: string;
  display_name: string;
  description?: string;
  /** CPUs guaranteed. */
  cpu: number;
  /** Memory guaranteed, e.g. `16G`. */
  memory: string;
  /**
   * null: CPU only. `any_type`: the flavor accepts several GPU types (or any),
   * so a job may name none and the allocator chooses; `min_memory_mib`: only
   * GPU types with at least this much memory.
   */
  gpu: {
    fraction?: string;
    any_type?: boolean;
    min_memory_mib?: number;
  } | null;
  /** GPU types a job of this flavor may name (empty for CPU only). */
  gpu_types: string[];
  /** The user's projects that may use this flavor. */
  projects: string[];
  /** GPU type -> how many jobs of this flavor could start now. */
  available: { [gpuType: string]: number };
}

export interface IProject {
  slug: string;
  display_name: string;
}

export interface IImage {
  key: string;
  display_name: string;
  projects: string[];
}

export type OutputFormat = 'ipynb' | 'html';

/** `Choices`: what the user may choose in the Run-as-job dialog. */
export interface IChoices {
  projects: IProject[];
  flavors: IFlavor[];
  images: IImage[];
  /** Image key of the user's running server. */
  default_image: string | null;
  output_formats: OutputFormat[];
  max_timeout_seconds: number;
  max_retries: number;
  /** The GPUs are simulated (no real GPU). */
  simulated?: boolean;
  /** How a job reaches the user's storage. */
  storage?: IStorage;
}

/** How a job reaches the user's storage (`storage` of `GET choices`). */
export interface IStorage {
  /** Every node can mount it (ReadWriteMany). */
  shared: boolean;
  /** The node it is attached to now, where the job runs. */
  node: string | null;
  /** Why no job can run now, or null. */
  blocked: string | null;
}

/** `CreateJob`: the body of `POST jobs`. */
export interface ICreateJob {
  name?: string;
  input_path: string;
  project?: string;
  flavor: string;
  gpu_type?: string;
  image?: string;
  parameters?: { [name: string]: JSONValue };
  environment?: { [name: string]: string };
  timeout_seconds?: number | null;
  max_retries?: number;
  output_formats?: OutputFormat[];
  tags?: string[];
  idempotency_key?: string;
}

/** The body of `POST jobs/{job_id}/rerun`. */
export interface IRerunJob {
  name?: string;
  parameters?: { [name: string]: JSONValue };
  idempotency_key?: string;
}

export interface IGpuSlice {
  description?: string;
  fraction?: string;
  gpu_type?: string;
  node?: string;
}

/** `Job`. Times are ms since the epoch. */
export interface IJob {
  job_id: string;
  name: string;
  owner: string;
  /** The notebook the user submitted. */
  input_path: string;
  /** The copy that runs, relative to the root. */
  snapshot_path?: string;
  project?: string | null;
  flavor?: string;
  gpu_type?: string | null;
  image?: string | null;
  parameters?: { [name: string]: JSONValue };
  environment?: { [name: string]: string };
  timeout_seconds?: number | null;
  max_retries?: number;
  output_formats?: string[];
  tags?: string[];
  status: JobStatus;
  status_message?: string | null;
  /** Why a queued job does not run yet (Unschedulable, ImagePullBackOff, ...). */
  pending_reason?: string | null;
  attempts?: number;
  progress?: { cell?: number; cells?: number } | null;
  /** Index (from 0) of the cell that raised among the executed cells (output.ipynb: +1). */
  failed_cell?: number | null;
  /** The same cell among the code cells that ran, from 1, as the log says. */
  failed_cell_number?: number | null;
  gpu_slice?: IGpuSlice | null;
  /** format (ipynb, html, log) -> path relative to the root. */
  output_files?: { [format: string]: string };
  rerun_of?: string | null;
  create_time: number;
  start_time?: number | null;
  end_time?: number | null;
}

/** Filters of `GET jobs`. */
export interface IJobQuery {
  status?: JobStatus;
  q?: string;
  tag?: string;
}

/** One visible GPU of the slice (`SliceStatus.devices`); null: not read. */
export interface ISliceDevice {
  /** UUID or index, as the server sees it. */
  id: string;
  uuid?: string | null;
  name?: string | null;
  memory_total_mib?: number | null;
  memory_used_mib?: number | null;
  utilization_percent?: number | null;
}

/** `SliceStatus`: the server's GPU slice and what its own processes use. */
export interface ISliceGpu {
  /** GPU type, e.g. `RTX3090`. */
  type: string;
  /** `1/4` of one GPU, or a whole number of GPUs. */
  share: string;
  memory_cap_mib: number | null;
  /** null: unknown (no NVML, or a simulated GPU). */
  memory_used_mib: number | null;
  utilization_percent: number | null;
  compute_min_percent?: number | null;
  compute_max_percent?: number | null;
  simulated: boolean;
  devices: ISliceDevice[];
  /**
   * Who read memory_used_mib and utilization_percent: NVML in this server, or the node
   * agent through the hub (in a container NVML cannot tell this server's processes);
   * null: nobody could.
   */
  readings_from?: 'nvml' | 'node agent' | null;
}

/** `SliceIdle`: the hub's verdict on the slice. */
export interface ISliceIdle {
  /** Minutes the hub has found the slice idle; null: not idle. */
  idle_minutes: number | null;
  /** Minutes before the hub stops the server (0: now); null: it will not. */
  stops_in_minutes: number | null;
}

/** The answer of `GET slice`: `gpu` is null on a CPU-only server. */
export interface ISliceStatus {
  gpu: ISliceGpu | null;
  /** null or absent: unknown (no hub, or the hub did not answer). */
  idle?: ISliceIdle | null;
}
