/**
 * The parts of a job form that show its shared state (jobform.ts): the frame
 * with what runs, the error that names no field and the buttons; the job name;
 * and the Parameters section.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import {
  Field,
  FormButtons,
  FormError,
  IFormButtonsProps,
  inputProps,
  ParameterFields
} from './fields';
import type { IJobForm } from './jobform';
import { parameterField } from './validation';

export interface IJobFormFrameProps extends Omit<
  IFormButtonsProps,
  'submitting'
> {
  /** `data-testid` of the form. */
  testId: string;
  /** The line on top: what the job runs. */
  intro: string;
  form: IJobForm;
  /** Why the form could not load; shown instead of the server's error. */
  loadError?: string | null;
  children: React.ReactNode;
}

/** A job form: what runs, the error that names no field, the fields, the buttons. */
export function JobFormFrame(props: IJobFormFrameProps): JSX.Element {
  const { testId, intro, form, loadError, children, ...buttons } = props;
  return (
    <div className="jp-AIConsole-form" data-testid={testId}>
      <p className="jp-AIConsole-notebook">{intro}</p>
      <FormError message={loadError ?? form.topError} />
      {children}
      <FormButtons {...buttons} submitting={form.submitting} />
    </div>
  );
}

/** The job name, prefilled from the notebook and the time. */
export function JobNameField(props: {
  form: IJobForm;
  error: string | undefined;
  trans: TranslationBundle;
}): JSX.Element {
  const { form, error, trans } = props;
  return (
    <Field name="name" label={trans.__('Job name')} error={error}>
      <input
        {...inputProps('name', error)}
        type="text"
        value={form.name}
        onChange={event => form.setName(event.target.value)}
      />
    </Field>
  );
}

export interface IParametersSectionProps {
  form: IJobForm;
  /** The error of a field (`param-<name>`), the form's or the server's. */
  errorOf: (field: string) => string | undefined;
  /** Why the parameters could not be read. */
  loadError?: string | null;
  /** While true, the section shows no editors (the parameters are loading). */
  loading?: boolean;
  trans: TranslationBundle;
}

/** The Parameters section of a job form: its error and the editors. */
export function ParametersSection(props: IParametersSectionProps): JSX.Element {
  const { form, errorOf, loadError, loading, trans } = props;
  return (
    <fieldset
      className="jp-AIConsole-section"
      data-testid="ai-console-parameters"
    >
      <legend>{trans.__('Parameters')}</legend>
      <FormError message={loadError ?? form.serverErrors.parameters ?? null} />
      {loading ? null : (
        <ParameterFields
          parameters={form.parameters}
          inputs={form.inputs}
          errors={Object.fromEntries(
            form.parameters.map(p => [p.name, errorOf(parameterField(p.name))])
          )}
          onChange={form.editParameter}
          trans={trans}
        />
      )}
    </fieldset>
  );
}
