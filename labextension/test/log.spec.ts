import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { JobLog } from '../src/log';
import type { AIConsoleClient, ILogReadOptions } from '../src/request';

/** One `readJobLog` call, answered by the test. */
class Read {
  constructor(
    readonly jobId: string,
    readonly options: ILogReadOptions
  ) {
    this.promise = new Promise<void>((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // As fetch does: an aborted read rejects with an AbortError.
    options.signal?.addEventListener('abort', () =>
      this._reject(new DOMException('The read was aborted', 'AbortError'))
    );
  }

  readonly promise: Promise<void>;

  chunk(text: string): void {
    this.options.onChunk(text);
  }

  end(): void {
    this._resolve();
  }

  fail(error: unknown): void {
    this._reject(error);
  }

  private _resolve!: () => void;
  private _reject!: (error: unknown) => void;
}

/** The part of the REST client a JobLog uses. */
class FakeClient {
  reads: Read[] = [];

  readJobLog(jobId: string, options: ILogReadOptions): Promise<void> {
    const read = new Read(jobId, options);
    this.reads.push(read);
    return read.promise;
  }

  get last(): Read {
    return this.reads[this.reads.length - 1];
  }
}

/** Lets every pending promise callback run (timers are fake, setImmediate is not). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise(resolve => setImmediate(resolve));
  }
}

/** A JobLog whose `finished()` answers from `answers` (the last one repeats). */
function makeLog(answers: (boolean | Error)[]) {
  const client = new FakeClient();
  let asked = 0;
  const finished = vi.fn(async () => {
    const answer = answers[Math.min(asked++, answers.length - 1)];
    if (answer instanceof Error) {
      throw answer;
    }
    return answer;
  });
  const log = new JobLog({
    client: client as unknown as AIConsoleClient,
    jobId: 'job-1',
    finished
  });
  let changes = 0;
  log.changed.connect(() => {
    changes++;
  });
  return { client, finished, log, changes: () => changes };
}

describe('JobLog', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads the log of a finished job once, without following', async () => {
    const { client, finished, log, changes } = makeLog([true]);
    const started = log.start();
    await settle();
    expect(client.reads).toHaveLength(1);
    expect(client.last.jobId).toBe('job-1');
    expect(client.last.options.follow).toBe(false);
    expect(log.following).toBe(false);

    client.last.chunk('epoch 1\n');
    expect(log.text).toBe('epoch 1\n');
    client.last.chunk('epoch 2\n');
    client.last.end();
    await started;

    expect(log.text).toBe('epoch 1\nepoch 2\n');
    expect(log.error).toBeNull();
    expect(log.truncated).toBe(false);
    expect(finished).toHaveBeenCalledTimes(1);
    expect(changes()).toBeGreaterThanOrEqual(2);
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(client.reads).toHaveLength(1);
  });

  it('follows a running job, then reads it once more when it has ended', async () => {
    const { client, log } = makeLog([false, true]);
    const started = log.start();
    await settle();
    expect(client.reads).toHaveLength(1);
    expect(client.last.options.follow).toBe(true);
    expect(log.following).toBe(true);

    client.last.chunk('cell 1\n');
    expect(log.text).toBe('cell 1\n');
    client.last.chunk('cell 2\n');
    expect(log.text).toBe('cell 1\ncell 2\n');
    client.last.end(); // the job ended, the server closed the stream
    await settle();
    expect(log.following).toBe(false);

    vi.advanceTimersByTime(1000);
    await settle();
    expect(client.reads).toHaveLength(2);
    expect(client.last.options.follow).toBe(false);
    // Each read starts from the beginning: the text is replaced, not appended to.
    client.last.chunk('cell 1\ncell 2\ncell 3\n');
    client.last.end();
    await started;
    expect(log.text).toBe('cell 1\ncell 2\ncell 3\n');
  });

  it('shows why a dropped stream failed and reopens it later, waiting longer each time', async () => {
    const { client, log } = makeLog([false]);
    void log.start();
    await settle();
    client.last.chunk('partial\n');
    client.last.fail(new Error('NetworkError: connection reset'));
    await settle();
    expect(log.error).toBe('NetworkError: connection reset');
    expect(log.following).toBe(false);
    expect(log.text).toBe('partial\n');

    vi.advanceTimersByTime(1999);
    await settle();
    expect(client.reads).toHaveLength(1);
    vi.advanceTimersByTime(1);
    await settle();
    expect(client.reads).toHaveLength(2);
    expect(client.last.options.follow).toBe(true);

    client.last.fail('proxy timeout');
    await settle();
    expect(log.error).toBe('proxy timeout');
    vi.advanceTimersByTime(3999);
    await settle();
    expect(client.reads).toHaveLength(2);
    vi.advanceTimersByTime(1);
    await settle();
    expect(client.reads).toHaveLength(3);

    // Text coming in again clears the error.
    client.last.chunk('partial\nmore\n');
    expect(log.error).toBeNull();
    expect(log.text).toBe('partial\nmore\n');
    log.dispose();
  });

  it('follows the log when it cannot tell whether the job has finished', async () => {
    const { client, log } = makeLog([new Error('503')]);
    void log.start();
    await settle();
    expect(client.reads).toHaveLength(1);
    expect(client.last.options.follow).toBe(true);
    log.dispose();
  });

  it('starts only once', async () => {
    const { client, log } = makeLog([false]);
    void log.start();
    void log.start();
    await settle();
    expect(client.reads).toHaveLength(1);
    log.dispose();
  });

  it('stops reading when disposed: aborts the stream, reopens nothing, emits nothing', async () => {
    const { client, log, changes } = makeLog([false]);
    const started = log.start();
    await settle();
    client.last.chunk('line\n');
    const signal = client.last.options.signal!;
    const before = changes();

    log.dispose();
    expect(log.isDisposed).toBe(true);
    expect(signal.aborted).toBe(true);
    await started;
    expect(log.error).toBeNull();
    expect(changes()).toBe(before);

    vi.advanceTimersByTime(120_000);
    await settle();
    expect(client.reads).toHaveLength(1);
    log.dispose(); // a second dispose is harmless
  });

  it('keeps the last 2,000,000 characters of a huge log and says so', async () => {
    const { client, log } = makeLog([true]);
    const started = log.start();
    await settle();
    const head = 'x'.repeat(1_000_000);
    const tail = 'y'.repeat(1_000_000);
    client.last.chunk('dropped\n');
    client.last.chunk(head + tail);
    client.last.end();
    await started;
    expect(log.truncated).toBe(true);
    expect(log.text).toBe(head + tail);
    expect(log.text).toHaveLength(2_000_000);
  });

  it('is not truncated at exactly the limit', async () => {
    const { client, log } = makeLog([true]);
    const started = log.start();
    await settle();
    client.last.chunk('z'.repeat(2_000_000));
    client.last.end();
    await started;
    expect(log.truncated).toBe(false);
    expect(log.text).toHaveLength(2_000_000);
  });
});
