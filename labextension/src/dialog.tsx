/**
 * The Run-as-job dialog: choose where and how the notebook runs, fill in its
 * parameters, and submit it (`POST jobs`). The dialog checks every field before
 * it lets the user submit, and shows the server's refusals next to the field.
 */
import type { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import {
  defaultGpuType,
  defaultImage,
  defaultProject,
  flavorLabel,
  flavorsFor,
  gpuTypeLabel,
  imagesFor,
  isGpuFlavor,
  needsProjectChoice
} from './choices';
import {
  Field,
  FormButtons,
  FormError,
  inputProps,
  fieldTestId,
  ParameterFields
} from './fields';
import { showFormDialog } from './formdialog';
import type { AIConsoleClient } from './request';
import type {
  IChoices,
  ICreateJob,
  IJob,
  IParameter,
  JSONValue,
  OutputFormat
} from './types';
import {
  defaultJobName,
  describeSubmitError,
  IEnvRow,
  newIdempotencyKey,
  parameterInput,
  ParameterInput,
  parseEnvironment,
  parseParameter,
  parseRetries,
  parseTags,
  parseTimeout,
  withoutField
} from './validation';

/** Fields of this form that a server error can name (besides `param-<name>`). */
const FIELDS = [
  'name',
  'project',
  'flavor',
  'gpu_type',
  'image',
  'parameters',
  'environment',
  'timeout',
  'retries',
  'output_formats',
  'tags'
];

export interface IRunAsJobFormProps {
  client: AIConsoleClient;
  /** The notebook, relative to the server's root. */
  path: string;
  trans: TranslationBundle;
  onSubmitted: (job: IJob) => void;
  onCancel: () => void;
}

/** The form of the Run-as-job dialog. */
export function RunAsJobForm(props: IRunAsJobFormProps): JSX.Element {
  const { client, path, trans } = props;
  // One key per dialog: a second submit (double click, retry) returns the first job.
  const [idempotencyKey] = React.useState(newIdempotencyKey);
  const [choices, setChoices] = React.useState<IChoices | null>(null);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  const [parameters, setParameters] = React.useState<IParameter[]>([]);
  const [parametersError, setParametersError] = React.useState<string | null>(
    null
  );
  const [name, setName] = React.useState(() => defaultJobName(path));
  const [project, setProject] = React.useState('');
  const [flavor, setFlavor] = React.useState('');
  const [gpuType, setGpuType] = React.useState('');
  const [image, setImage] = React.useState('');
  const [inputs, setInputs] = React.useState<{
    [name: string]: ParameterInput;
  }>({});
  const [envRows, setEnvRows] = React.useState<IEnvRow[]>([]);
  const [timeout, setTimeoutText] = React.useState('');
  const [retries, setRetries] = React.useState('0');
  const [formats, setFormats] = React.useState<OutputFormat[]>([]);
  const [tags, setTags] = React.useState('');
  const [serverErrors, setServerErrors] = React.useState<{
    [field: string]: string;
  }>({});
  const [topError, setTopError] = React.useState<string | null>(null);
  const [submitting, setSubmitting] = React.useState(false);
  const sending = React.useRef(false);

  React.useEffect(() => {
    let live = true;
    client.getChoices().then(
      loaded => {
        if (!live) {
          return;
        }
        const chosenProject = defaultProject(loaded);
        const firstFlavor = flavorsFor(loaded, chosenProject)[0];
        setChoices(loaded);
        setProject(chosenProject);
        setFlavor(firstFlavor?.name ?? '');
        setGpuType(defaultGpuType(firstFlavor));
        setImage(defaultImage(loaded, chosenProject));
        setFormats([...loaded.output_formats]);
      },
      error => {
        if (live) {
          setLoadError(
            trans.__(
              'Could not load what you may run: %1',
              String(error?.message ?? error)
            )
          );
        }
      }
    );
    client.getParameters(path).then(
      declared => {
        if (!live) {
          return;
        }
        setParameters(declared);
        setInputs(
          Object.fromEntries(
            declared.map(p => [p.name, parameterInput(p.type, p.value)])
          )
        );
      },
      error => {
        if (live) {
          setParametersError(
            trans.__(
              "Could not read the notebook's parameters: %1",
              String(error?.message ?? error)
            )
          );
        }
      }
    );
    return () => {
      live = false;
    };
  }, [client, path]);

  /** A field changed: its server error and the general one no longer apply. */
  const touch = (field: string) => {
    setTopError(null);
    setServerErrors(previous => withoutField(previous, field));
  };

  const projectFlavors = choices ? flavorsFor(choices, project) : [];
  const selectedFlavor = projectFlavors.find(f => f.name === flavor);
  const projectImages = choices ? imagesFor(choices, project) : [];
  const gpu = isGpuFlavor(selectedFlavor);

  // Checks of every field; the first problem blocks the submit button.
  const errors: { [field: string]: string } = {};
  const parameterValues: { [name: string]: JSONValue } = {};
  if (!name.trim()) {
    errors.name = trans.__('Enter a name for the job.');
  }
  if (choices) {
    if (needsProjectChoice(choices) && !project) {
      errors.project = trans.__('Choose a project.');
    }
    if (!selectedFlavor) {
      errors.flavor = projectFlavors.length
        ? trans.__('Choose a flavor.')
        : trans.__(
            'No flavor is available to this project: ask your course admin.'
          );
    }
    if (gpu && !gpuType) {
      errors.gpu_type = trans.__('Choose a GPU type.');
    }
  }
  for (const parameter of parameters) {
    const parsed = parseParameter(
      parameter.type,
      inputs[parameter.name],
      trans
    );
    if (parsed.ok) {
      parameterValues[parameter.name] = parsed.value;
    } else {
      errors[`param-${parameter.name}`] = parsed.error;
    }
  }
  const environment = parseEnvironment(envRows, trans);
  if (!environment.ok) {
    errors.environment = environment.error;
  }
  const timeoutSeconds = parseTimeout(
    timeout,
    choices?.max_timeout_seconds ?? 0,
    trans
  );
  if (!timeoutSeconds.ok) {
    errors.timeout = timeoutSeconds.error;
  }
  const maxRetries = parseRetries(retries, choices?.max_retries ?? 0, trans);
  if (!maxRetries.ok) {
    errors.retries = maxRetries.error;
  }
  if (choices && choices.output_formats.length && !formats.length) {
    errors.output_formats = trans.__('Choose at least one output format.');
  }
  const errorOf = (field: string): string | undefined =>
    errors[field] ?? serverErrors[field];

  let blocked: string | null = null;
  if (loadError) {
    blocked = trans.__('The dialog could not load its choices.');
  } else if (!choices) {
    blocked = trans.__('Loading…');
  } else if (Object.keys(errors).length) {
    blocked = trans.__('Correct the fields marked in red.');
  }

  const submit = async () => {
    if (blocked || sending.current || !selectedFlavor) {
      return;
    }
    sending.current = true;
    setSubmitting(true);
    setTopError(null);
    setServerErrors({});
    const body: ICreateJob = {
      name: name.trim(),
      input_path: path,
      flavor: selectedFlavor.name,
      idempotency_key: idempotencyKey,
      max_retries: maxRetries.ok ? maxRetries.value : 0,
      tags: parseTags(tags)
    };
    if (project) {
      body.project = project;
    }
    if (gpu && gpuType) {
      body.gpu_type = gpuType;
    }
    if (image) {
      body.image = image;
    }
    if (parameters.length) {
      body.parameters = parameterValues;
    }
    if (environment.ok && Object.keys(environment.value).length) {
      body.environment = environment.value;
    }
    if (timeoutSeconds.ok && timeoutSeconds.value !== null) {
      body.timeout_seconds = timeoutSeconds.value;
    }
    if (choices?.output_formats.length) {
      body.output_formats = formats;
    }
    try {
      const job = await client.createJob(body);
      props.onSubmitted(job);
    } catch (error) {
      const known = [...FIELDS, ...parameters.map(p => `param-${p.name}`)];
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

  const changeProject = (slug: string) => {
    touch('project');
    setProject(slug);
    if (choices) {
      const flavors = flavorsFor(choices, slug);
      const keep = flavors.find(f => f.name === flavor) ?? flavors[0];
      setFlavor(keep?.name ?? '');
      setGpuType(
        keep?.gpu_types.includes(gpuType) ? gpuType : defaultGpuType(keep)
      );
      const images = imagesFor(choices, slug);
      if (!images.some(i => i.key === image)) {
        setImage(defaultImage(choices, slug));
      }
    }
  };

  const changeFlavor = (flavorName: string) => {
    touch('flavor');
    setFlavor(flavorName);
    const next = projectFlavors.find(f => f.name === flavorName);
    setGpuType(
      next?.gpu_types.includes(gpuType) ? gpuType : defaultGpuType(next)
    );
  };

  const setEnvRow = (index: number, row: IEnvRow) => {
    touch('environment');
    setEnvRows(envRows.map((r, i) => (i === index ? row : r)));
  };

  return (
    <div className="jp-AIConsole-form" data-testid="ai-console-form">
      <p className="jp-AIConsole-notebook">{trans.__('Notebook: %1', path)}</p>
      <FormError message={loadError ?? topError} />
      {choices?.simulated ? (
        <p className="jp-AIConsole-hint" data-testid="ai-console-simulated">
          {trans.__('The GPUs of this hub are simulated: jobs run on the CPU.')}
        </p>
      ) : null}

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

      {choices && needsProjectChoice(choices) ? (
        <Field
          name="project"
          label={trans.__('Project')}
          error={errorOf('project')}
        >
          <select
            {...inputProps('project', errorOf('project'))}
            value={project}
            onChange={event => changeProject(event.target.value)}
          >
            {choices.projects.map(p => (
              <option key={p.slug} value={p.slug}>
                {p.display_name}
              </option>
            ))}
          </select>
        </Field>
      ) : null}

      {choices ? (
        <Field
          name="flavor"
          label={trans.__('Flavor')}
          error={errorOf('flavor')}
          hint={selectedFlavor?.description}
        >
          <select
            {...inputProps('flavor', errorOf('flavor'))}
            value={flavor}
            onChange={event => changeFlavor(event.target.value)}
          >
            {projectFlavors.map(f => (
              <option key={f.name} value={f.name}>
                {flavorLabel(f, trans)}
              </option>
            ))}
          </select>
        </Field>
      ) : null}

      {selectedFlavor && gpu ? (
        <Field
          name="gpu_type"
          label={trans.__('GPU type')}
          error={errorOf('gpu_type')}
        >
          <select
            {...inputProps('gpu_type', errorOf('gpu_type'))}
            value={gpuType}
            onChange={event => {
              touch('gpu_type');
              setGpuType(event.target.value);
            }}
          >
            {selectedFlavor.gpu_types.map(type => (
              <option key={type} value={type}>
                {gpuTypeLabel(selectedFlavor, type, trans)}
              </option>
            ))}
          </select>
        </Field>
      ) : null}

      {choices && projectImages.length ? (
        <Field name="image" label={trans.__('Image')} error={errorOf('image')}>
          <select
            {...inputProps('image', errorOf('image'))}
            value={image}
            onChange={event => {
              touch('image');
              setImage(event.target.value);
            }}
          >
            {projectImages.map(i => (
              <option key={i.key} value={i.key}>
                {i.key === choices.default_image
                  ? trans.__("%1 (this server's image)", i.display_name)
                  : i.display_name}
              </option>
            ))}
          </select>
        </Field>
      ) : null}

      <fieldset
        className="jp-AIConsole-section"
        data-testid="ai-console-parameters"
      >
        <legend>{trans.__('Parameters')}</legend>
        <FormError
          message={parametersError ?? serverErrors.parameters ?? null}
        />
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
      </fieldset>

      <fieldset className="jp-AIConsole-section">
        <legend>{trans.__('Run')}</legend>
        <Field
          name="environment"
          label={trans.__('Environment variables')}
          error={errorOf('environment')}
        >
          <div className="jp-AIConsole-envRows" id={fieldTestId('environment')}>
            {envRows.map((row, index) => (
              <div className="jp-AIConsole-envRow" key={index}>
                <input
                  className="jp-mod-styled jp-AIConsole-input"
                  data-testid={`ai-console-field-env-key-${index}`}
                  aria-label={trans.__('Name')}
                  placeholder={trans.__('NAME')}
                  type="text"
                  value={row.key}
                  onChange={event =>
                    setEnvRow(index, { ...row, key: event.target.value })
                  }
                />
                <input
                  className="jp-mod-styled jp-AIConsole-input"
                  data-testid={`ai-console-field-env-value-${index}`}
                  aria-label={trans.__('Value')}
                  placeholder={trans.__('value')}
                  type="text"
                  value={row.value}
                  onChange={event =>
                    setEnvRow(index, { ...row, value: event.target.value })
                  }
                />
                <button
                  type="button"
                  className="jp-mod-styled jp-AIConsole-smallButton"
                  data-testid={`ai-console-env-remove-${index}`}
                  title={trans.__('Remove this variable')}
                  onClick={() => {
                    touch('environment');
                    setEnvRows(envRows.filter((_, i) => i !== index));
                  }}
                >
                  ×
                </button>
              </div>
            ))}
            <button
              type="button"
              className="jp-mod-styled jp-AIConsole-smallButton"
              data-testid="ai-console-env-add"
              onClick={() => setEnvRows([...envRows, { key: '', value: '' }])}
            >
              {trans.__('Add variable')}
            </button>
          </div>
        </Field>

        <Field
          name="timeout"
          label={trans.__('Timeout (minutes)')}
          error={errorOf('timeout')}
          hint={
            choices
              ? trans.__(
                  'Optional; at most %1 minutes.',
                  Math.floor(choices.max_timeout_seconds / 60)
                )
              : null
          }
        >
          <input
            {...inputProps('timeout', errorOf('timeout'))}
            type="number"
            min={1}
            step={1}
            value={timeout}
            onChange={event => {
              touch('timeout');
              setTimeoutText(event.target.value);
            }}
          />
        </Field>

        <Field
          name="retries"
          label={trans.__('Retries')}
          error={errorOf('retries')}
          hint={choices ? trans.__('0 to %1.', choices.max_retries) : null}
        >
          <input
            {...inputProps('retries', errorOf('retries'))}
            type="number"
            min={0}
            max={choices?.max_retries ?? 0}
            step={1}
            value={retries}
            onChange={event => {
              touch('retries');
              setRetries(event.target.value);
            }}
          />
        </Field>

        {choices && choices.output_formats.length ? (
          <Field
            name="output_formats"
            label={trans.__('Output formats')}
            error={errorOf('output_formats')}
          >
            <div className="jp-AIConsole-checkboxes">
              {choices.output_formats.map(format => (
                <label key={format}>
                  <input
                    type="checkbox"
                    className="jp-AIConsole-checkbox"
                    data-testid={fieldTestId(`output-${format}`)}
                    checked={formats.includes(format)}
                    onChange={event => {
                      touch('output_formats');
                      setFormats(
                        event.target.checked
                          ? choices.output_formats.filter(
                              f => f === format || formats.includes(f)
                            )
                          : formats.filter(f => f !== format)
                      );
                    }}
                  />
                  <span>
                    {format === 'html'
                      ? trans.__('HTML')
                      : trans.__('Notebook (ipynb)')}
                  </span>
                </label>
              ))}
            </div>
          </Field>
        ) : null}

        <Field
          name="tags"
          label={trans.__('Tags')}
          error={errorOf('tags')}
          hint={trans.__('Separated by commas.')}
        >
          <input
            {...inputProps('tags', errorOf('tags'))}
            type="text"
            value={tags}
            onChange={event => {
              touch('tags');
              setTags(event.target.value);
            }}
          />
        </Field>
      </fieldset>

      <FormButtons
        submitLabel={trans.__('Run as job')}
        blocked={blocked}
        submitting={submitting}
        onSubmit={() => void submit()}
        onCancel={props.onCancel}
        trans={trans}
      />
    </div>
  );
}

export interface IRunAsJobDialogOptions {
  client: AIConsoleClient;
  path: string;
  trans: TranslationBundle;
}

/** Opens the Run-as-job dialog; resolves with the job created, or null. */
export async function showRunAsJobDialog(
  options: IRunAsJobDialogOptions
): Promise<IJob | null> {
  let created: IJob | null = null;
  await showFormDialog({
    title: options.trans.__('Run as job'),
    testId: 'ai-console-dialog',
    render: close => (
      <RunAsJobForm
        client={options.client}
        path={options.path}
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
