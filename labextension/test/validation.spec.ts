import { afterEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../src/request';
import type { IParameter, JSONValue, ParameterType } from '../src/types';
import {
  ENV_NAME_PATTERN,
  blockedReason,
  defaultJobName,
  describeSubmitError,
  formFieldOf,
  inferParameterType,
  newIdempotencyKey,
  parameterField,
  parameterInput,
  parameterInputs,
  parseEnvironment,
  parseParameter,
  parseParameters,
  parseRetries,
  parseTags,
  parseTimeout,
  rerunParameters,
  withoutField
} from '../src/validation';
import { trans } from './translation';

const UUID_V4 =
  /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('defaultJobName', () => {
  it('is <notebook stem>-<yyyy-mm-dd_hhmmss> in local time, zero-padded', () => {
    const now = new Date(2024, 0, 5, 3, 4, 9); // 5 January 2024, 03:04:09 local
    expect(defaultJobName('course/week1/train.ipynb', now)).toBe(
      'train-2024-01-05_030409'
    );
  });

  it('keeps the dots of the stem and drops only the extension', () => {
    const now = new Date(2025, 11, 31, 23, 59, 58);
    expect(defaultJobName('resnet.v2.ipynb', now)).toBe(
      'resnet.v2-2025-12-31_235958'
    );
  });

  it('falls back to "notebook" when the path has no stem', () => {
    const now = new Date(2024, 5, 1, 12, 0, 0);
    expect(defaultJobName('', now)).toBe('notebook-2024-06-01_120000');
  });

  it('uses the current time by default', () => {
    expect(defaultJobName('a.ipynb')).toMatch(/^a-\d{4}-\d{2}-\d{2}_\d{6}$/);
  });
});

describe('newIdempotencyKey', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('is a fresh UUID v4 each time', () => {
    const a = newIdempotencyKey();
    const b = newIdempotencyKey();
    expect(a).toMatch(UUID_V4);
    expect(b).toMatch(UUID_V4);
    expect(a).not.toBe(b);
  });

  it('still makes a UUID v4 without crypto.randomUUID (plain http)', () => {
    const getRandomValues = <T extends ArrayBufferView | null>(array: T): T => {
      new Uint8Array(array!.buffer).fill(0xff);
      return array;
    };
    vi.stubGlobal('crypto', { getRandomValues });
    expect(newIdempotencyKey()).toBe('ffffffff-ffff-4fff-bfff-ffffffffffff');
  });
});

describe('parseParameter', () => {
  it.each([
    ['3', 3],
    [' 42 ', 42],
    ['-7', -7],
    ['+5', 5],
    ['0', 0]
  ])('reads int %j as %j', (input, value) => {
    expect(parseParameter('int', input, trans)).toEqual({ ok: true, value });
  });

  it.each(['3.5', '1e3', '', 'abc', '3 4', '0x10', '99999999999999999999'])(
    'refuses int %j as not a whole number',
    input => {
      expect(parseParameter('int', input, trans)).toEqual({
        ok: false,
        error: 'Enter a whole number.'
      });
    }
  );

  it.each([
    ['0.5', 0.5],
    ['.5', 0.5],
    ['5.', 5],
    ['3', 3],
    ['-2.25', -2.25],
    ['1e-3', 0.001],
    ['2.5E+2', 250],
    [' 0.1 ', 0.1]
  ])('reads float %j as %j', (input, value) => {
    expect(parseParameter('float', input, trans)).toEqual({ ok: true, value });
  });

  it.each(['', 'abc', '1,5', 'NaN', 'Infinity', '1e999', '.', '1.2.3'])(
    'refuses float %j',
    input => {
      expect(parseParameter('float', input, trans)).toEqual({
        ok: false,
        error: 'Enter a number, e.g. 0.5.'
      });
    }
  );

  it('reads bool from the checkbox', () => {
    expect(parseParameter('bool', true, trans)).toEqual({
      ok: true,
      value: true
    });
    expect(parseParameter('bool', false, trans)).toEqual({
      ok: true,
      value: false
    });
  });

  it('takes str as typed, spaces included', () => {
    expect(parseParameter('str', '  hello ', trans)).toEqual({
      ok: true,
      value: '  hello '
    });
    expect(parseParameter('str', '', trans)).toEqual({ ok: true, value: '' });
  });

  it('reads a JSON list', () => {
    expect(parseParameter('list', '[1, "a", [true]]', trans)).toEqual({
      ok: true,
      value: [1, 'a', [true]]
    });
    expect(parseParameter('list', '[]', trans)).toEqual({
      ok: true,
      value: []
    });
  });

  it('refuses a list that is not JSON, with an example', () => {
    for (const input of ['[1, 2', "['a']", '[True]', '']) {
      expect(parseParameter('list', input, trans)).toEqual({
        ok: false,
        error: 'Enter a JSON list, e.g. [1, 2, 3].'
      });
    }
  });

  it('refuses JSON of another shape for a list', () => {
    for (const input of ['{"a": 1}', '3', '"x"', 'null']) {
      expect(parseParameter('list', input, trans)).toEqual({
        ok: false,
        error: 'This must be a JSON list [ ... ].'
      });
    }
  });

  it('reads a JSON object', () => {
    expect(
      parseParameter('dict', '{"lr": 0.1, "layers": [64, 32]}', trans)
    ).toEqual({ ok: true, value: { lr: 0.1, layers: [64, 32] } });
  });

  it('refuses a dict that is not JSON, with an example', () => {
    for (const input of ["{'lr': 0.1}", '{lr: 0.1}', '{']) {
      expect(parseParameter('dict', input, trans)).toEqual({
        ok: false,
        error: 'Enter a JSON object, e.g. {"lr": 0.1}.'
      });
    }
  });

  it('refuses JSON of another shape for a dict', () => {
    for (const input of ['[1]', 'null', '1', 'true']) {
      expect(parseParameter('dict', input, trans)).toEqual({
        ok: false,
        error: 'This must be a JSON object { ... }.'
      });
    }
  });
});

describe('parameterInput', () => {
  it('prefills each editor from the declared value', () => {
    expect(parameterInput('bool', true)).toBe(true);
    expect(parameterInput('bool', false)).toBe(false);
    expect(parameterInput('bool', null)).toBe(false);
    expect(parameterInput('int', 3)).toBe('3');
    expect(parameterInput('int', null)).toBe('');
    expect(parameterInput('float', 0.5)).toBe('0.5');
    expect(parameterInput('str', 'x')).toBe('x');
    expect(parameterInput('str', null)).toBe('');
    expect(parameterInput('str', 3)).toBe('3');
    expect(parameterInput('list', [1, 2])).toBe('[1,2]');
    expect(parameterInput('list', null)).toBe('[]');
    expect(parameterInput('dict', { a: 1 })).toBe('{"a":1}');
    expect(parameterInput('dict', null)).toBe('{}');
  });

  const roundTrips: [ParameterType, JSONValue][] = [
    ['int', 12],
    ['int', -3],
    ['float', 0.001],
    ['float', 1e-7],
    ['float', -2.5],
    ['bool', true],
    ['bool', false],
    ['str', 'a b'],
    ['list', [1, [2, 3], { x: null }]],
    ['dict', { lr: 0.1, name: 'x', nested: { a: [1] } }]
  ];
  it.each(roundTrips)(
    'gives back the declared %s value %j when left untouched',
    (type, value) => {
      expect(parseParameter(type, parameterInput(type, value), trans)).toEqual({
        ok: true,
        value
      });
    }
  );
});

describe('parameterInputs', () => {
  it('prefills the editors by parameter name', () => {
    expect(
      parameterInputs([
        { name: 'epochs', type: 'int', value: 1 },
        { name: 'debug', type: 'bool', value: true }
      ])
    ).toEqual({ epochs: '1', debug: true });
  });
});

describe('parseParameters', () => {
  const parameters: IParameter[] = [
    { name: 'epochs', type: 'int', value: 1 },
    { name: 'rate', type: 'float', value: 0.5 },
    { name: 'layers', type: 'list', value: [] }
  ];

  it('reads every editor as a value of its type', () => {
    const inputs = { epochs: '4', rate: '0.5', layers: '[64, 32]' };
    expect(parseParameters(parameters, inputs, trans)).toEqual({
      values: { epochs: 4, rate: 0.5, layers: [64, 32] },
      errors: {}
    });
  });

  it('names the refused editors by field, keeping the values of the others', () => {
    const inputs = { epochs: '2.5', rate: '0.5', layers: 'x' };
    const { values, errors } = parseParameters(parameters, inputs, trans);
    expect(values).toEqual({ rate: 0.5 });
    expect(errors).toEqual({
      [parameterField('epochs')]: 'Enter a whole number.',
      [parameterField('layers')]: 'Enter a JSON list, e.g. [1, 2, 3].'
    });
    expect(parameterField('epochs')).toBe('param-epochs');
  });
});

describe('inferParameterType', () => {
  it.each([
    [true, 'bool'],
    [false, 'bool'],
    [3, 'int'],
    [0, 'int'],
    [3.5, 'float'],
    [[1], 'list'],
    [{ a: 1 }, 'dict'],
    ['x', 'str'],
    [null, 'str']
  ] as [JSONValue, ParameterType][])('types %j as %s', (value, type) => {
    expect(inferParameterType(value)).toBe(type);
  });
});

describe('rerunParameters', () => {
  it("types the job's values by the notebook's declarations", () => {
    const declared: IParameter[] = [
      { name: 'lr', type: 'float', value: 0.1 },
      { name: 'epochs', type: 'int', value: 10 }
    ];
    // lr=1 looks like an int, but the notebook declares a float.
    expect(rerunParameters({ lr: 1, epochs: 3 }, declared)).toEqual([
      { name: 'lr', type: 'float', value: 1 },
      { name: 'epochs', type: 'int', value: 3 }
    ]);
  });

  it('infers the type of undeclared values and adds declared ones the job lacked', () => {
    const declared: IParameter[] = [
      { name: 'seed', type: 'int', value: 0 },
      { name: 'tags', type: 'list', value: ['a'] }
    ];
    expect(rerunParameters({ seed: 7, extra: 'x' }, declared)).toEqual([
      { name: 'seed', type: 'int', value: 7 },
      { name: 'extra', type: 'str', value: 'x' },
      { name: 'tags', type: 'list', value: ['a'] }
    ]);
  });

  it('infers every type when the declarations are unknown', () => {
    expect(
      rerunParameters({ on: true, n: 2, f: 0.5, d: { a: 1 } }, [])
    ).toEqual([
      { name: 'on', type: 'bool', value: true },
      { name: 'n', type: 'int', value: 2 },
      { name: 'f', type: 'float', value: 0.5 },
      { name: 'd', type: 'dict', value: { a: 1 } }
    ]);
  });
});

describe('environment variables', () => {
  it.each(['A', '_x', 'MY_VAR_2', 'lower'])('accepts the name %j', name => {
    expect(ENV_NAME_PATTERN.test(name)).toBe(true);
  });

  it.each(['1ABC', 'MY-VAR', 'A B', 'Ü', 'A.B', ''])(
    'refuses the name %j',
    name => {
      expect(ENV_NAME_PATTERN.test(name)).toBe(false);
    }
  );

  it('builds the environment, trimming names but not values, skipping blank rows', () => {
    expect(
      parseEnvironment(
        [
          { key: ' WANDB_MODE ', value: ' offline ' },
          { key: '', value: '' },
          { key: 'EMPTY', value: '' }
        ],
        trans
      )
    ).toEqual({
      ok: true,
      value: { WANDB_MODE: ' offline ', EMPTY: '' }
    });
  });

  it('names the variable whose name is invalid', () => {
    expect(parseEnvironment([{ key: '2FAST', value: '1' }], trans)).toEqual({
      ok: false,
      error:
        '"2FAST" is not a valid variable name: use letters, digits and _, not starting with a digit.'
    });
  });

  it('refuses a value without a name', () => {
    const parsed = parseEnvironment([{ key: '  ', value: 'x' }], trans);
    expect(parsed.ok).toBe(false);
  });

  it('refuses a name set twice', () => {
    expect(
      parseEnvironment(
        [
          { key: 'SEED', value: '1' },
          { key: 'SEED ', value: '2' }
        ],
        trans
      )
    ).toEqual({ ok: false, error: '"SEED" is set twice.' });
  });

  it('gives an empty environment for no rows', () => {
    expect(parseEnvironment([], trans)).toEqual({ ok: true, value: {} });
  });
});

describe('parseTimeout', () => {
  it('means no timeout when empty', () => {
    expect(parseTimeout('', 3600, trans)).toEqual({ ok: true, value: null });
    expect(parseTimeout('   ', 3600, trans)).toEqual({ ok: true, value: null });
  });

  it('converts minutes to seconds', () => {
    expect(parseTimeout('30', 3600, trans)).toEqual({ ok: true, value: 1800 });
    expect(parseTimeout(' 60 ', 3600, trans)).toEqual({
      ok: true,
      value: 3600
    });
  });

  it.each(['0', '-5', '1.5', 'ten', '1e2'])('refuses %j', input => {
    expect(parseTimeout(input, 3600, trans)).toEqual({
      ok: false,
      error: 'Enter whole minutes, 1 or more.'
    });
  });

  it('refuses more than the maximum, naming it in minutes', () => {
    expect(parseTimeout('61', 3600, trans)).toEqual({
      ok: false,
      error: 'At most 60 minutes.'
    });
    expect(parseTimeout('3', 150, trans)).toEqual({
      ok: false,
      error: 'At most 2 minutes.'
    });
  });

  it('has no upper bound when the maximum is 0', () => {
    expect(parseTimeout('100000', 0, trans)).toEqual({
      ok: true,
      value: 6_000_000
    });
  });
});

describe('parseRetries', () => {
  it('is 0 when empty', () => {
    expect(parseRetries('', 3, trans)).toEqual({ ok: true, value: 0 });
  });

  it('takes 0..max', () => {
    expect(parseRetries('0', 3, trans)).toEqual({ ok: true, value: 0 });
    expect(parseRetries(' 3 ', 3, trans)).toEqual({ ok: true, value: 3 });
  });

  it.each(['4', '-1', '1.5', 'two'])('refuses %j for a maximum of 3', input => {
    expect(parseRetries(input, 3, trans)).toEqual({
      ok: false,
      error: 'Enter a whole number from 0 to 3.'
    });
  });
});

describe('parseTags', () => {
  it('splits on commas, trims, drops empties and repeats, keeps order', () => {
    expect(parseTags(' exp1, baseline,,exp1 , ,  lr-sweep ')).toEqual([
      'exp1',
      'baseline',
      'lr-sweep'
    ]);
  });

  it('gives no tags for blank text', () => {
    expect(parseTags('')).toEqual([]);
    expect(parseTags(' , ')).toEqual([]);
  });
});

describe('formFieldOf', () => {
  const known = [
    'name',
    'flavor',
    'gpu_type',
    'parameters',
    'environment',
    'timeout',
    'retries',
    'tags',
    'param-lr'
  ];

  it('maps request field names to the dialog fields', () => {
    expect(formFieldOf('timeout_seconds', known)).toBe('timeout');
    expect(formFieldOf('max_retries', known)).toBe('retries');
    expect(formFieldOf('env', known)).toBe('environment');
    expect(formFieldOf('environment', known)).toBe('environment');
    expect(formFieldOf('gpu_type', known)).toBe('gpu_type');
    expect(formFieldOf('name', known)).toBe('name');
  });

  it('maps a nested field to its top-level field', () => {
    expect(formFieldOf('environment.HOME', known)).toBe('environment');
    expect(formFieldOf('tags[3]', known)).toBe('tags');
  });

  it.each([
    'parameters.lr',
    'parameters/lr',
    "parameters['lr']",
    'parameters["lr"]',
    'parameters[lr]',
    'parameter.lr'
  ])('sends %j to the editor of parameter lr', field => {
    expect(formFieldOf(field, known)).toBe('param-lr');
  });

  it('sends an unknown parameter to the parameters section, if any', () => {
    expect(formFieldOf('parameters.seed', known)).toBe('parameters');
    expect(formFieldOf('parameters.seed', ['name'])).toBeNull();
    expect(formFieldOf('parameters', known)).toBe('parameters');
  });

  it('gives null (top of the form) for no field or one the dialog lacks', () => {
    expect(formFieldOf(null, known)).toBeNull();
    expect(formFieldOf(undefined, known)).toBeNull();
    expect(formFieldOf('', known)).toBeNull();
    expect(formFieldOf('input_path', known)).toBeNull();
    expect(formFieldOf('timeout_seconds', ['name'])).toBeNull();
  });
});

describe('withoutField', () => {
  it('removes the field without touching the original', () => {
    const errors = { name: 'bad', tags: 'too many' };
    expect(withoutField(errors, 'name')).toEqual({ tags: 'too many' });
    expect(errors).toEqual({ name: 'bad', tags: 'too many' });
  });

  it('returns the same object when the field has no error', () => {
    const errors = { name: 'bad' };
    expect(withoutField(errors, 'tags')).toBe(errors);
  });
});

describe('blockedReason', () => {
  it('says the form is loading, whatever the errors', () => {
    expect(blockedReason(true, {}, trans)).toBe('Loading…');
    expect(blockedReason(true, { name: 'bad' }, trans)).toBe('Loading…');
  });

  it('asks to correct the fields while one is refused, else lets submit', () => {
    expect(blockedReason(false, { name: 'bad' }, trans)).toBe(
      'Correct the fields marked in red.'
    );
    expect(blockedReason(false, {}, trans)).toBeNull();
  });
});

describe('describeSubmitError', () => {
  const known = ['name', 'timeout', 'parameters', 'param-lr'];

  it("puts a refusal (4xx) next to the field it names, with the server's message", () => {
    const error = new ApiError(
      400,
      'timeout_seconds must be a whole number from 1 to 3600',
      'timeout_seconds'
    );
    expect(describeSubmitError(error, known, trans)).toEqual({
      field: 'timeout',
      message: 'timeout_seconds must be a whole number from 1 to 3600'
    });
  });

  it('puts a parameter refusal next to that parameter', () => {
    const error = new ApiError(
      400,
      'parameter "lr": expected float, got str',
      'parameters.lr'
    );
    expect(describeSubmitError(error, known, trans)).toEqual({
      field: 'param-lr',
      message: 'parameter "lr": expected float, got str'
    });
  });

  it('puts a refusal of the whole request at the top', () => {
    const error = new ApiError(409, 'no slice is free');
    expect(describeSubmitError(error, known, trans)).toEqual({
      field: null,
      message: 'no slice is free'
    });
  });

  it('shows a server failure (5xx) at the top with its status', () => {
    const error = new ApiError(502, 'Bad Gateway', 'name');
    expect(describeSubmitError(error, known, trans)).toEqual({
      field: null,
      message: 'The server could not take the job (502): Bad Gateway'
    });
  });

  it('says the server could not be reached for other errors', () => {
    expect(
      describeSubmitError(new TypeError('Failed to fetch'), known, trans)
    ).toEqual({
      field: null,
      message: 'Could not reach the server: Failed to fetch'
    });
    expect(describeSubmitError('offline', known, trans)).toEqual({
      field: null,
      message: 'Could not reach the server: offline'
    });
  });
});
