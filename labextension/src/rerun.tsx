/**
 * The Re-run dialog: the same snapshot again, with the past job's parameters
 * prefilled for editing (`POST jobs/{id}/rerun`).
 */
import * as React from 'react';

import { showSubmitDialog } from './formdialog';
import { JobFormFrame, JobNameField, ParametersSection } from './jobfields';
import { IJobFormOptions, IJobFormProps, useJobForm } from './jobform';
import type { IJob, IParameter, IRerunJob } from './types';
import { blockedReason, rerunParameters } from './validation';

export interface IRerunFormProps extends IJobFormProps {
  job: IJob;
}

/** The form of the Re-run dialog. */
export function RerunForm(props: IRerunFormProps): JSX.Element {
  const { client, job, trans } = props;
  const form = useJobForm(job.input_path, trans, props.onSubmitted);
  const { loadParameters } = form;
  const [loaded, setLoaded] = React.useState(false);

  React.useEffect(() => {
    let live = true;
    // The declarations type the editors; the snapshot is what runs again.
    const path = job.snapshot_path || job.input_path;
    void client
      .getParameters(path)
      .catch(() => [] as IParameter[])
      .then(declared => {
        if (!live) {
          return;
        }
        loadParameters(rerunParameters(job.parameters ?? {}, declared));
        setLoaded(true);
      });
    return () => {
      live = false;
    };
  }, [client, job]);

  const errorOf = (field: string): string | undefined =>
    form.errors[field] ?? form.serverErrors[field];
  const blocked = blockedReason(!loaded, form.errors, trans);

  const submit = () => {
    if (blocked) {
      return;
    }
    const body: IRerunJob = {
      name: form.name.trim(),
      parameters: form.values,
      idempotency_key: form.idempotencyKey
    };
    void form.submit(() => client.rerunJob(job.job_id, body), []);
  };

  return (
    <JobFormFrame
      testId="ai-console-rerun-form"
      intro={trans.__(
        'Runs the snapshot of %1 taken for job "%2" again.',
        job.input_path,
        job.name
      )}
      form={form}
      submitLabel={trans.__('Re-run')}
      blocked={blocked}
      onSubmit={submit}
      onCancel={props.onCancel}
      trans={trans}
    >
      <JobNameField form={form} error={errorOf('name')} trans={trans} />
      <ParametersSection
        form={form}
        errorOf={errorOf}
        loading={!loaded}
        trans={trans}
      />
    </JobFormFrame>
  );
}

/** Opens the Re-run dialog for a job; resolves with the new job, or null. */
export function showRerunDialog(
  options: IJobFormOptions & { job: IJob }
): Promise<IJob | null> {
  return showSubmitDialog<IJob>({
    title: options.trans.__('Re-run "%1"', options.job.name),
    testId: 'ai-console-rerun-dialog',
    render: handlers => <RerunForm {...options} {...handlers} />
  });
}
