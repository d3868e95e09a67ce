/**
 * The part every job form shares: the job name, the parameter editors, and the
 * submit — one request at a time, a refusal shown next to the field it names or
 * at the top of the form.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import type { IFormHandlers } from './formdialog';
import type { AIConsoleClient } from './request';
import type { IJob, IParameter, JSONValue } from './types';
import {
  defaultJobName,
  describeSubmitError,
  newIdempotencyKey,
  parameterField,
  parameterInputs,
  ParameterInput,
  parseParameters,
  withoutField
} from './validation';

/** What every job form works with. */
export interface IJobFormOptions {
  client: AIConsoleClient;
  trans: TranslationBundle;
}

/** The props every job form takes. */
export interface IJobFormProps extends IJobFormOptions, IFormHandlers<IJob> {}

/** The shared state of a job form and what changes it. */
export interface IJobForm {
  /** One key per dialog: a second submit (double click, retry) returns the first job. */
  idempotencyKey: string;
  /** The job name as typed. */
  name: string;
  setName: (name: string) => void;
  /** The parameters being edited, and what their editors hold. */
  parameters: IParameter[];
  inputs: { [name: string]: ParameterInput };
  /** Shows these parameters, each editor holding its value. */
  loadParameters: (parameters: IParameter[]) => void;
  editParameter: (name: string, input: ParameterInput) => void;
  /** The parameters' values, for the request. */
  values: { [name: string]: JSONValue };
  /** Why the name or a parameter is refused, by field. */
  errors: { [field: string]: string };
  /** The server's refusals, by field, and the one that names no field. */
  serverErrors: { [field: string]: string };
  topError: string | null;
  /** Whether a request is on its way. */
  submitting: boolean;
  /** A field changed: its server error and the general one no longer apply. */
  touch: (field: string) => void;
  /**
   * Sends `request` unless one is on its way. A refusal naming `name`,
   * `parameters`, a parameter or one of `fields` goes next to it, else on top.
   */
  submit: (
    request: () => Promise<IJob>,
    fields: readonly string[]
  ) => Promise<void>;
}

/** The shared state of a job form for the notebook `path`. */
export function useJobForm(
  path: string,
  trans: TranslationBundle,
  onSubmitted: (job: IJob) => void
): IJobForm {
  const [idempotencyKey] = React.useState(newIdempotencyKey);
  const [name, setNameText] = React.useState(() => defaultJobName(path));
  const [parameters, setParameters] = React.useState<IParameter[]>([]);
  const [inputs, setInputs] = React.useState<{
    [name: string]: ParameterInput;
  }>({});
  const [serverErrors, setServerErrors] = React.useState<{
    [field: string]: string;
  }>({});
  const [topError, setTopError] = React.useState<string | null>(null);
  const [submitting, setSubmitting] = React.useState(false);
  const sending = React.useRef(false);

  const touch = (field: string) => {
    setTopError(null);
    setServerErrors(previous => withoutField(previous, field));
  };

  const loadParameters = React.useCallback((loaded: IParameter[]) => {
    setParameters(loaded);
    setInputs(parameterInputs(loaded));
  }, []);

  const { values, errors } = parseParameters(parameters, inputs, trans);
  if (!name.trim()) {
    errors.name = trans.__('Enter a name for the job.');
  }

  const submit = async (
    request: () => Promise<IJob>,
    fields: readonly string[]
  ) => {
    if (sending.current) {
      return;
    }
    sending.current = true;
    setSubmitting(true);
    setTopError(null);
    setServerErrors({});
    try {
      onSubmitted(await request());
    } catch (error) {
      const known = [
        'name',
        'parameters',
        ...fields,
        ...parameters.map(p => parameterField(p.name))
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

  return {
    idempotencyKey,
    name,
    setName: text => {
      touch('name');
      setNameText(text);
    },
    parameters,
    inputs,
    loadParameters,
    editParameter: (parameterName, input) => {
      touch(parameterField(parameterName));
      touch('parameters');
      setInputs({ ...inputs, [parameterName]: input });
    },
    values,
    errors,
    serverErrors,
    topError,
    submitting,
    touch,
    submit
  };
}
