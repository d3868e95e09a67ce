/**
 * Building blocks of the job forms: a labelled field with its error, the typed
 * parameter editors, the banner for errors without a field, and the buttons.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import type { IParameter } from './types';
import { parameterField, ParameterInput } from './validation';

/** `data-testid` and DOM id of a field's input. */
export function fieldTestId(name: string): string {
  return `ai-console-field-${name}`;
}

/** `data-testid` of a field's error text. */
export function fieldErrorTestId(name: string): string {
  return `ai-console-field-error-${name}`;
}

export interface IFieldProps {
  /** The field's name: `name`, `flavor`, `param-lr`, ... */
  name: string;
  label: string;
  /** Why the value is refused; shown under the input. */
  error?: string | null;
  /** A line of help under the input. */
  hint?: React.ReactNode;
  /** Label after the control (checkboxes). */
  inline?: boolean;
  children: React.ReactNode;
}

/** A label, its control, an optional hint and the reason the value is refused. */
export function Field(props: IFieldProps): JSX.Element {
  const { name, label, error, hint, inline, children } = props;
  const className =
    'jp-AIConsole-field' +
    (inline ? ' jp-AIConsole-field-inline' : '') +
    (error ? ' jp-AIConsole-field-invalid' : '');
  return (
    <div className={className} data-field={name}>
      {inline ? (
        <label htmlFor={fieldTestId(name)}>
          {children}
          <span>{label}</span>
        </label>
      ) : (
        <>
          <label htmlFor={fieldTestId(name)}>{label}</label>
          {children}
        </>
      )}
      {hint ? <div className="jp-AIConsole-hint">{hint}</div> : null}
      {error ? (
        <div
          className="jp-AIConsole-fieldError"
          data-testid={fieldErrorTestId(name)}
          role="alert"
        >
          {error}
        </div>
      ) : null}
    </div>
  );
}

/** The attributes every input of a field carries. */
export function inputProps(
  name: string,
  error?: string | null
): {
  id: string;
  'data-testid': string;
  'aria-invalid': boolean;
  className: string;
} {
  return {
    id: fieldTestId(name),
    'data-testid': fieldTestId(name),
    'aria-invalid': !!error,
    className: 'jp-mod-styled jp-AIConsole-input'
  };
}

export interface IParameterFieldsProps {
  parameters: IParameter[];
  inputs: { [name: string]: ParameterInput };
  /** Errors by parameter name. */
  errors: { [name: string]: string | undefined };
  onChange: (name: string, input: ParameterInput) => void;
  trans: TranslationBundle;
}

/** One typed editor per declared parameter (fields `param-<name>`). */
export function ParameterFields(props: IParameterFieldsProps): JSX.Element {
  const { parameters, inputs, errors, onChange, trans } = props;
  if (!parameters.length) {
    return (
      <p className="jp-AIConsole-hint" data-testid="ai-console-no-parameters">
        {trans.__(
          'This notebook declares no parameters (tag a cell "parameters" to declare some).'
        )}
      </p>
    );
  }
  return (
    <div className="jp-AIConsole-parameters">
      {parameters.map(parameter => {
        const field = parameterField(parameter.name);
        const error = errors[parameter.name];
        const json = parameter.type === 'list' || parameter.type === 'dict';
        return (
          <Field
            key={field}
            name={field}
            label={trans.__('%1 (%2)', parameter.name, parameter.type)}
            error={error}
            hint={json ? trans.__('JSON') : undefined}
            inline={parameter.type === 'bool'}
          >
            <ParameterEditor
              parameter={parameter}
              input={inputs[parameter.name]}
              error={error}
              onChange={input => onChange(parameter.name, input)}
            />
          </Field>
        );
      })}
    </div>
  );
}

/** The control of a parameter's type: checkbox, number, JSON text or text. */
function ParameterEditor(props: {
  parameter: IParameter;
  input: ParameterInput | undefined;
  error: string | undefined;
  onChange: (input: ParameterInput) => void;
}): JSX.Element {
  const { parameter, input, error, onChange } = props;
  const common = inputProps(parameterField(parameter.name), error);
  if (parameter.type === 'bool') {
    return (
      <input
        {...common}
        className="jp-AIConsole-checkbox"
        type="checkbox"
        checked={input === true}
        onChange={event => onChange(event.target.checked)}
      />
    );
  }
  const text = {
    ...common,
    value: String(input ?? ''),
    onChange: (
      event: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>
    ) => onChange(event.target.value)
  };
  switch (parameter.type) {
    case 'int':
    case 'float':
      return (
        <input
          {...text}
          type="number"
          step={parameter.type === 'int' ? 1 : 'any'}
        />
      );
    case 'list':
    case 'dict':
      return <textarea {...text} rows={2} spellCheck={false} />;
    default:
      return <input {...text} type="text" />;
  }
}

/** An error the server gave without naming a field, or a load failure. */
export function FormError(props: {
  message: string | null;
}): JSX.Element | null {
  if (!props.message) {
    return null;
  }
  return (
    <div
      className="jp-AIConsole-formError"
      data-testid="ai-console-form-error"
      role="alert"
    >
      {props.message}
    </div>
  );
}

export interface IFormButtonsProps {
  submitLabel: string;
  /** Why submitting is not possible now, or null. */
  blocked: string | null;
  submitting: boolean;
  onSubmit: () => void;
  onCancel: () => void;
  trans: TranslationBundle;
}

/** Cancel and submit; submit is disabled while the form is invalid or sending. */
export function FormButtons(props: IFormButtonsProps): JSX.Element {
  const { submitLabel, blocked, submitting, onSubmit, onCancel, trans } = props;
  return (
    <div className="jp-AIConsole-buttons">
      {blocked ? (
        <span
          className="jp-AIConsole-blocked"
          data-testid="ai-console-submit-blocked"
        >
          {blocked}
        </span>
      ) : null}
      <button
        type="button"
        className="jp-Dialog-button jp-mod-reject jp-mod-styled"
        data-testid="ai-console-cancel-dialog"
        onClick={onCancel}
      >
        <div className="jp-Dialog-buttonLabel">{trans.__('Cancel')}</div>
      </button>
      <button
        type="button"
        className="jp-Dialog-button jp-mod-accept jp-mod-styled"
        data-testid="ai-console-submit"
        disabled={!!blocked || submitting}
        onClick={onSubmit}
      >
        <div className="jp-Dialog-buttonLabel">
          {submitting ? trans.__('Submitting…') : submitLabel}
        </div>
      </button>
    </div>
  );
}
