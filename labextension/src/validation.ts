/**
 * Pure checks and conversions of the job forms (no DOM): the job name, typed
 * parameter values, environment variables, timeout, retries and tags, whether
 * the form may be submitted, and where a server error goes.
 */
import { PathExt } from '@jupyterlab/coreutils';
import type { TranslationBundle } from '@jupyterlab/translation';

import { ApiError } from './request';
import type { IParameter, JSONValue, ParameterType } from './types';

/** Environment variable names the dialog accepts. */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The default job name: `<notebook stem>-<yyyy-mm-dd_hhmmss>` in local time. */
export function defaultJobName(path: string, now: Date = new Date()): string {
  const stem = PathExt.basename(path, PathExt.extname(path)) || 'notebook';
  const two = (n: number) => String(n).padStart(2, '0');
  const date = `${now.getFullYear()}-${two(now.getMonth() + 1)}-${two(now.getDate())}`;
  const time = `${two(now.getHours())}${two(now.getMinutes())}${two(now.getSeconds())}`;
  return `${stem}-${date}_${time}`;
}

/** A key for `idempotency_key`: one per dialog, so a double submit makes one job. */
export function newIdempotencyKey(): string {
  // crypto.randomUUID exists only in secure contexts (https, localhost); a hub
  // served over plain http still has crypto.getRandomValues.
  if (
    typeof crypto !== 'undefined' &&
    typeof crypto.randomUUID === 'function'
  ) {
    return crypto.randomUUID();
  }
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** What a parameter editor holds: text for every type but bool. */
export type ParameterInput = string | boolean;

/** The editor's initial content for a declared parameter. */
export function parameterInput(
  type: ParameterType,
  value: JSONValue
): ParameterInput {
  switch (type) {
    case 'bool':
      return value === true;
    case 'int':
    case 'float':
      return typeof value === 'number' ? String(value) : '';
    case 'str':
      return typeof value === 'string'
        ? value
        : value === null
          ? ''
          : String(value);
    case 'list':
    case 'dict':
      return JSON.stringify(value ?? (type === 'list' ? [] : {}));
  }
}

/** The editors' initial contents, by parameter name. */
export function parameterInputs(parameters: IParameter[]): {
  [name: string]: ParameterInput;
} {
  return Object.fromEntries(
    parameters.map(p => [p.name, parameterInput(p.type, p.value)])
  );
}

/** The form field of a parameter's editor: `param-<name>`. */
export function parameterField(name: string): string {
  return `param-${name}`;
}

/** The result of reading an editor: the typed value, or why it is not one. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const INT_PATTERN = /^[+-]?\d+$/;
const FLOAT_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Reads a parameter editor's content as a value of the declared type. */
export function parseParameter(
  type: ParameterType,
  input: ParameterInput,
  trans: TranslationBundle
): Parsed<JSONValue> {
  if (type === 'bool') {
    return { ok: true, value: input === true };
  }
  const text = typeof input === 'string' ? input : String(input);
  switch (type) {
    case 'str':
      return { ok: true, value: text };
    case 'int': {
      const trimmed = text.trim();
      if (
        !INT_PATTERN.test(trimmed) ||
        !Number.isSafeInteger(Number(trimmed))
      ) {
        return { ok: false, error: trans.__('Enter a whole number.') };
      }
      return { ok: true, value: Number(trimmed) };
    }
    case 'float': {
      const trimmed = text.trim();
      if (!FLOAT_PATTERN.test(trimmed) || !Number.isFinite(Number(trimmed))) {
        return { ok: false, error: trans.__('Enter a number, e.g. 0.5.') };
      }
      return { ok: true, value: Number(trimmed) };
    }
    case 'list':
    case 'dict': {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return {
          ok: false,
          error:
            type === 'list'
              ? trans.__('Enter a JSON list, e.g. [1, 2, 3].')
              : trans.__('Enter a JSON object, e.g. {"lr": 0.1}.')
        };
      }
      const isList = Array.isArray(value);
      const isDict = value !== null && typeof value === 'object' && !isList;
      if (type === 'list' && !isList) {
        return {
          ok: false,
          error: trans.__('This must be a JSON list [ ... ].')
        };
      }
      if (type === 'dict' && !isDict) {
        return {
          ok: false,
          error: trans.__('This must be a JSON object { ... }.')
        };
      }
      return { ok: true, value: value as JSONValue };
    }
  }
}

/** The values of the parameter editors, and why some are refused (by `param-<name>`). */
export function parseParameters(
  parameters: IParameter[],
  inputs: { [name: string]: ParameterInput },
  trans: TranslationBundle
): {
  values: { [name: string]: JSONValue };
  errors: { [field: string]: string };
} {
  const values: { [name: string]: JSONValue } = {};
  const errors: { [field: string]: string } = {};
  for (const parameter of parameters) {
    const parsed = parseParameter(
      parameter.type,
      inputs[parameter.name],
      trans
    );
    if (parsed.ok) {
      values[parameter.name] = parsed.value;
    } else {
      errors[parameterField(parameter.name)] = parsed.error;
    }
  }
  return { values, errors };
}

/** The type of a value from a past job, for a re-run whose declarations are unknown. */
export function inferParameterType(value: JSONValue): ParameterType {
  if (typeof value === 'boolean') {
    return 'bool';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? 'int' : 'float';
  }
  if (Array.isArray(value)) {
    return 'list';
  }
  if (value !== null && typeof value === 'object') {
    return 'dict';
  }
  return 'str';
}

/**
 * The parameters of a re-run: the job's values, typed by the notebook's
 * declarations where known, else by the values themselves.
 */
export function rerunParameters(
  values: { [name: string]: JSONValue },
  declared: IParameter[]
): IParameter[] {
  const types = new Map(declared.map(p => [p.name, p.type]));
  const result: IParameter[] = Object.entries(values).map(([name, value]) => ({
    name,
    type: types.get(name) ?? inferParameterType(value),
    value
  }));
  for (const parameter of declared) {
    if (!(parameter.name in values)) {
      result.push(parameter);
    }
  }
  return result;
}

/** One row of the environment variables editor. */
export interface IEnvRow {
  key: string;
  value: string;
}

/** The environment as the API takes it, or the first problem with its rows. */
export function parseEnvironment(
  rows: IEnvRow[],
  trans: TranslationBundle
): Parsed<{ [name: string]: string }> {
  const environment: { [name: string]: string } = {};
  for (const row of rows) {
    const key = row.key.trim();
    if (!key && !row.value) {
      continue;
    }
    if (!ENV_NAME_PATTERN.test(key)) {
      return {
        ok: false,
        error: trans.__(
          '"%1" is not a valid variable name: use letters, digits and _, not starting with a digit.',
          key
        )
      };
    }
    if (key in environment) {
      return { ok: false, error: trans.__('"%1" is set twice.', key) };
    }
    environment[key] = row.value;
  }
  return { ok: true, value: environment };
}

/** The timeout in seconds (null: none) from a number of minutes. */
export function parseTimeout(
  minutes: string,
  maxTimeoutSeconds: number,
  trans: TranslationBundle
): Parsed<number | null> {
  const text = minutes.trim();
  if (!text) {
    return { ok: true, value: null };
  }
  const maxMinutes = Math.floor(maxTimeoutSeconds / 60);
  if (!INT_PATTERN.test(text) || Number(text) < 1) {
    return { ok: false, error: trans.__('Enter whole minutes, 1 or more.') };
  }
  if (maxTimeoutSeconds > 0 && Number(text) * 60 > maxTimeoutSeconds) {
    return {
      ok: false,
      error: trans.__('At most %1 minutes.', maxMinutes)
    };
  }
  return { ok: true, value: Number(text) * 60 };
}

/** The number of retries, 0..max. */
export function parseRetries(
  text: string,
  maxRetries: number,
  trans: TranslationBundle
): Parsed<number> {
  const trimmed = text.trim();
  if (!trimmed) {
    return { ok: true, value: 0 };
  }
  if (
    !INT_PATTERN.test(trimmed) ||
    Number(trimmed) < 0 ||
    Number(trimmed) > maxRetries
  ) {
    return {
      ok: false,
      error: trans.__('Enter a whole number from 0 to %1.', maxRetries)
    };
  }
  return { ok: true, value: Number(trimmed) };
}

/** Comma-separated tags, trimmed, without empties or repeats. */
export function parseTags(text: string): string[] {
  const tags: string[] = [];
  for (const part of text.split(',')) {
    const tag = part.trim();
    if (tag && !tags.includes(tag)) {
      tags.push(tag);
    }
  }
  return tags;
}

/**
 * The dialog field a server error names (`field` of the `Error` body): request
 * field names map to the dialog's (`timeout_seconds` -> `timeout`,
 * `parameters.lr` -> `param-lr`, ...). Unknown fields give null (shown at the top).
 */
export function formFieldOf(
  field: string | null | undefined,
  known: readonly string[]
): string | null {
  if (!field) {
    return null;
  }
  const parameter = /^parameters?(?:\.|\/|\[['"]?)([^'"\]]+)/.exec(field);
  if (parameter) {
    const name = parameterField(parameter[1]);
    return known.includes(name)
      ? name
      : known.includes('parameters')
        ? 'parameters'
        : null;
  }
  const base = field.split(/[.[/]/)[0];
  const aliases: { [field: string]: string } = {
    timeout_seconds: 'timeout',
    max_retries: 'retries',
    env: 'environment'
  };
  const name = aliases[base] ?? base;
  return known.includes(name) ? name : null;
}

/** The errors without the one of `field` (the same object when it had none). */
export function withoutField(
  errors: { [field: string]: string },
  field: string
): { [field: string]: string } {
  if (!(field in errors)) {
    return errors;
  }
  const rest = { ...errors };
  delete rest[field];
  return rest;
}

/** Why the form cannot be submitted: still loading, or a field refused; else null. */
export function blockedReason(
  loading: boolean,
  errors: { [field: string]: string },
  trans: TranslationBundle
): string | null {
  if (loading) {
    return trans.__('Loading…');
  }
  return Object.keys(errors).length
    ? trans.__('Correct the fields marked in red.')
    : null;
}

/** Where and what to show for a failed submit. */
export interface ISubmitError {
  /** The dialog field to show it next to, or null for the top of the form. */
  field: string | null;
  message: string;
}

/** The message of a failed submit, and the field it belongs to. */
export function describeSubmitError(
  error: unknown,
  known: readonly string[],
  trans: TranslationBundle
): ISubmitError {
  if (error instanceof ApiError) {
    if (error.isClientError) {
      return { field: formFieldOf(error.field, known), message: error.message };
    }
    return {
      field: null,
      message: trans.__(
        'The server could not take the job (%1): %2',
        error.status,
        error.message
      )
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return {
    field: null,
    message: trans.__('Could not reach the server: %1', message)
  };
}
