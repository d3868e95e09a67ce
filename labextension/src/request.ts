/**
 * Calls to the AI Console server extension (`<base_url>/ai-console/...`, see
 * `server_extension/openapi.yaml`). Requests go through `ServerConnection`, which
 * adds the XSRF token and the session cookie jupyter_server checks.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type {
  IChoices,
  ICreateJob,
  IErrorBody,
  IJob,
  IJobQuery,
  IParameter,
  IRerunJob,
  ISliceStatus
} from './types';

/** The server extension's URL namespace under the server's base URL. */
export const API_NAMESPACE = 'ai-console';

/**
 * A 4xx/5xx answer of the server extension: its `message`, and the request field
 * at fault (`field`, null when the request as a whole was refused).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** Reads the `Error` body (`{"message", "field"}`) of a failed response. */
  static async fromResponse(response: Response): Promise<ApiError> {
    let message = response.statusText || `HTTP ${response.status}`;
    let field: string | null = null;
    try {
      const body = (await response.json()) as Partial<IErrorBody>;
      if (body && typeof body.message === 'string' && body.message) {
        message = body.message;
      }
      if (body && typeof body.field === 'string' && body.field) {
        field = body.field;
      }
    } catch {
      // Not JSON (a proxy's error page): keep the status text.
    }
    return new ApiError(response.status, message, field);
  }

  /** A 4xx: the request was refused and the user can correct it. */
  get isClientError(): boolean {
    return this.status >= 400 && this.status < 500;
  }
}

/** Options of a log read. */
export interface ILogReadOptions {
  /** Keep the response open and receive new lines until the job ends. */
  follow: boolean;
  /** Called with each decoded chunk of text, in order. */
  onChunk: (text: string) => void;
  /** Aborts the read (the promise then rejects with an `AbortError`). */
  signal?: AbortSignal;
}

/** The REST client of the server extension. */
export class AIConsoleClient {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** `GET flavors`: projects, flavors, GPU types and images the user may use. */
  getChoices(): Promise<IChoices> {
    return this.requestJSON<IChoices>('flavors');
  }

  /** `GET parameters?path=`: the parameters the notebook declares, in order. */
  async getParameters(path: string): Promise<IParameter[]> {
    const body = await this.requestJSON<{ parameters: IParameter[] }>(
      'parameters' + URLExt.objectToQueryString({ path })
    );
    return body.parameters ?? [];
  }

  /** `GET jobs`: the caller's jobs, newest first. */
  async listJobs(query: IJobQuery = {}): Promise<IJob[]> {
    const params: { [key: string]: string } = {};
    for (const [key, value] of Object.entries(query)) {
      if (value) {
        params[key] = String(value);
      }
    }
    const search = Object.keys(params).length
      ? URLExt.objectToQueryString(params)
      : '';
    const body = await this.requestJSON<{ jobs: IJob[] }>('jobs' + search);
    return body.jobs ?? [];
  }

  /** `POST jobs`: submits a notebook as a job (201, or 200 for a known key). */
  createJob(job: ICreateJob): Promise<IJob> {
    return this.requestJSON<IJob>('jobs', {
      method: 'POST',
      body: JSON.stringify(job)
    });
  }

  /** `GET jobs/{id}`. */
  getJob(jobId: string): Promise<IJob> {
    return this.requestJSON<IJob>(jobPath(jobId));
  }

  /** `DELETE jobs/{id}`: cancels the job; the record, log and outputs stay. */
  cancelJob(jobId: string): Promise<IJob> {
    return this.requestJSON<IJob>(jobPath(jobId), { method: 'DELETE' });
  }

  /** `POST jobs/{id}/rerun`: runs the same snapshot again. */
  rerunJob(jobId: string, body: IRerunJob = {}): Promise<IJob> {
    return this.requestJSON<IJob>(jobPath(jobId, 'rerun'), {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }

  /**
   * `GET jobs/{id}/log`: reads the log, passing each chunk to `onChunk` as it
   * arrives. With `follow`, the server keeps the response open until the job ends.
   */
  async readJobLog(jobId: string, options: ILogReadOptions): Promise<void> {
    const response = await this.request(
      jobPath(jobId, 'log') +
        URLExt.objectToQueryString({ follow: options.follow ? '1' : '0' }),
      { signal: options.signal }
    );
    if (!response.body) {
      options.onChunk(await response.text());
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        const text = decoder.decode(value, { stream: true });
        if (text) {
          options.onChunk(text);
        }
      }
      const tail = decoder.decode();
      if (tail) {
        options.onChunk(tail);
      }
    } finally {
      reader.releaseLock();
    }
  }

  /** `GET slice`: the server's GPU slice and what its processes use of it. */
  getSlice(): Promise<ISliceStatus> {
    return this.requestJSON<ISliceStatus>('slice', { cache: 'no-store' });
  }

  /** The URL of a job's output file, to open in a new browser tab. */
  outputUrl(jobId: string, format: 'ipynb' | 'html'): string {
    return (
      URLExt.join(
        this.serverSettings.baseUrl,
        API_NAMESPACE,
        jobPath(jobId, 'output')
      ) + URLExt.objectToQueryString({ format })
    );
  }

  private async requestJSON<T>(
    endPoint: string,
    init: RequestInit = {}
  ): Promise<T> {
    if (init.body !== undefined) {
      init.headers = { 'Content-Type': 'application/json', ...init.headers };
    }
    const response = await this.request(endPoint, init);
    return (await response.json()) as T;
  }

  private async request(
    endPoint: string,
    init: RequestInit = {}
  ): Promise<Response> {
    const url = URLExt.join(
      this.serverSettings.baseUrl,
      API_NAMESPACE,
      endPoint
    );
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') {
        throw error;
      }
      throw new ServerConnection.NetworkError(error as TypeError);
    }
    if (!response.ok) {
      throw await ApiError.fromResponse(response);
    }
    return response;
  }
}

function jobPath(jobId: string, ...rest: string[]): string {
  return ['jobs', encodeURIComponent(jobId), ...rest].join('/');
}
