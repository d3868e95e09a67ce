/**
 * The Re-run dialog: the same snapshot again, with the past job's parameters
 * prefilled for editing (`POST jobs/{id}/rerun`).
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import {
  Field,
  FormButtons,
  FormError,
  inputProps,
  ParameterFields
} from './fields';
import { showFormDialog } from './formdialog';
import type { AIConsoleClient } from './request';
import type { IJob, IParameter, IRerunJob, JSONValue } from './types';
import {
  defaultJobName,
  describeSubmitError,
  newIdempotencyKey,
  parameterInput,
  ParameterInput,
  parseParameter,
  rerunParameters,
  withoutField
} from './validation';

export interface IRerunFormProps {
  client: AIConsoleClient;
  job: IJob;
  trans: TranslationBundle;
  onSubmitted: (job: IJob) => void;
  onCancel: () => void;
}

/** The form of the Re-run dialog. */
export function RerunForm(props: IRerunFormProps): JSX.Element {
  const { client, job, trans } = props;
  const [idempotencyKey] = React.useState(newIdempotencyKey);
  const [loaded, setLoaded] = React.useState(false);
  const [parameters, setParameters] = React.useState<IParameter[]>([]);
  const [inputs, setInputs] = React.useState<{
    [name: string]: ParameterInput;
  }>({});
  const [name, setName] = React.useState(() => defaultJobName(job.input_path));
  const [serverErrors, setServerErrors] = React.useState<{
    [field: string]: string;
  }>({});
  const [topError, setTopError] = React.useState<string | null>(null);
  const [submitting, setSubmitting] = React.useState(false);
  const sending = React.useRef(false);

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
        const merged = rerunParameters(job.parameters ?? {}, declared);
        setParameters(merged);
        setInputs(
          Object.fromEntries(
            merged.map(p => [p.name, parameterInput(p.type, p.value)])
          )
        );
        setLoaded(true);
      });
    return () => {
      live = false;
    };
  }, [client, job]);

  const touch = (field: string) => {
    setTopError(null);
    setServerErrors(previous => withoutField(previous, field));
  };

  const errors: { [field: string]: string } = {};
  const values: { [name: string]: JSONValue } = {};
  if (!name.trim()) {
    errors.name = trans.__('Enter a name for the job.');
  }
  for (const parameter of parameters) {
    const parsed = parseParameter(
      parameter.type,
      inputs[parameter.name],
      trans
    );
    if (parsed.ok) {
      values[parameter.name] = parsed.value;
    } else {
      errors[`param-${parameter.name}`] = parsed.error;
    }
  }
  const errorOf = (field: string): string | undefined =>
    errors[field] ?? serverErrors[field];
  const blocked = !loaded
    ? trans.__('Loading…')
    : Object.keys(errors).length
      ? trans.__('Correct the fields marked in red.')
      : null;

  const submit = async () => {
    if (blocked || sending.current) {
      return;
    }
    sending.current = true;
    setSubmitting(true);
    setTopError(null);
    setServerErrors({});
    const body: IRerunJob = {
      name: name.trim(),
      parameters: values,
      idempotency_key: idempotencyKey
    };
    try {
      props.onSubmitted(await client.rerunJob(job.job_id, body));
    } catch (error) {
      const known = [
        'name',
        'parameters',
        ...parameters.map(p => `param-${p.name}`)
      ];
      const { field, message } = describeSubmitError(error, known, trans);
      if (field) {
        setServerErrors({ [field]: message });
      } else {
        setTopError(message);
      }
    } finally {
      sending.current = false;
      setSubmitting(false);
    }
  };

  return (
    <div className="jp-AIConsole-form" data-testid="ai-console-rerun-form">
      <p className="jp-AIConsole-notebook">
        {trans.__(
          'Runs the snapshot of %1 taken for job "%2" again.',
          job.input_path,
          job.name
        )}
      </p>
      <FormError message={topError} />
      <Field name="name" label={trans.__('Job name')} error={errorOf('name')}>
        <input
          {...inputProps('name', errorOf('name'))}
          type="text"
          value={name}
          onChange={event => {
            touch('name');
            setName(event.target.value);
          }}
        />
      </Field>
      <fieldset
        className="jp-AIConsole-section"
        data-testid="ai-console-parameters"
      >
        <legend>{trans.__('Parameters')}</legend>
        <FormError message={serverErrors.parameters ?? null} />
        {loaded ? (
          <ParameterFields
            parameters={parameters}
            inputs={inputs}
            errors={Object.fromEntries(
              parameters.map(p => [p.name, errorOf(`param-${p.name}`)])
            )}
            onChange={(parameterName, input) => {
              touch(`param-${parameterName}`);
              touch('parameters');
              setInputs({ ...inputs, [parameterName]: input });
            }}
            trans={trans}
          />
        ) : null}
      </fieldset>
      <FormButtons
        submitLabel={trans.__('Re-run')}
        blocked={blocked}
        submitting={submitting}
        onSubmit={() => void submit()}
        onCancel={props.onCancel}
        trans={trans}
      />
    </div>
  );
}

/** Opens the Re-run dialog for a job; resolves with the new job, or null. */
export async function showRerunDialog(options: {
  client: AIConsoleClient;
  job: IJob;
  trans: TranslationBundle;
}): Promise<IJob | null> {
  let created: IJob | null = null;
  await showFormDialog({
    title: options.trans.__('Re-run "%1"', options.job.name),
    testId: 'ai-console-rerun-dialog',
    render: close => (
      <RerunForm
        client={options.client}
        job={options.job}
        trans={options.trans}
        onSubmitted={job => {
          created = job;
          close();
        }}
        onCancel={close}
      />
    )
  });
  return created;
}
