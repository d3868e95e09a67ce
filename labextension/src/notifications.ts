/**
 * Notifications: a job submitted, and a job of the user's that completed or
 * failed (announced by the Jobs model's polling), each with a button that opens
 * the job.
 */
import { Notification } from '@jupyterlab/apputils';
import type { TranslationBundle } from '@jupyterlab/translation';

import type { JobsModel } from './model';
import type { IJob } from './types';

export type OpenJob = (jobId: string) => void;

/** "Job submitted", with a button to follow it in the Jobs panel. */
export function notifySubmitted(
  job: IJob,
  trans: TranslationBundle,
  openJob: OpenJob
): string {
  return Notification.success(trans.__('Job "%1" submitted.', job.name), {
    autoClose: 8000,
    actions: [
      {
        label: trans.__('Open job'),
        caption: trans.__('Show the job and its log'),
        callback: () => openJob(job.job_id)
      }
    ]
  });
}

/** "Job completed" or "Job failed in cell N". */
export function notifyFinished(
  job: IJob,
  trans: TranslationBundle,
  openJob: OpenJob
): string {
  const actions = [
    {
      label: trans.__('Open job'),
      caption: trans.__('Show the job and its log'),
      callback: () => openJob(job.job_id)
    }
  ];
  if (job.status === 'COMPLETED') {
    return Notification.success(trans.__('Job "%1" completed.', job.name), {
      autoClose: 10000,
      actions
    });
  }
  const message =
    typeof job.failed_cell_number === 'number'
      ? trans.__(
          'Job "%1" failed in cell %2.',
          job.name,
          job.failed_cell_number
        )
      : trans.__('Job "%1" failed.', job.name);
  return Notification.error(message, { autoClose: false, actions });
}

/** Announces every job the model sees finishing; returns a disconnect function. */
export function announceFinishedJobs(
  model: JobsModel,
  trans: TranslationBundle,
  openJob: OpenJob
): () => void {
  const announce = (_: JobsModel, job: IJob) => {
    notifyFinished(job, trans, openJob);
  };
  model.finished.connect(announce);
  return () => model.finished.disconnect(announce);
}
