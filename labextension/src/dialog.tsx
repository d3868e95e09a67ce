/**
 * The Run-as-job dialog: choose where and how the notebook runs, fill in its
 * parameters, and submit it (`POST jobs`). The dialog checks every field before
 * it lets the user submit, and shows the server's refusals next to the field.
 */
import * as React from 'react';

import {
  defaultGpuType,
  defaultImage,
  defaultProject,
  flavorLabel,
  flavorsFor,
  gpuTypeMissing,
  gpuTypeOptions,
  imagesFor,
  isGpuFlavor,
  needsProjectChoice,
  requestedGpuType,
  storageNote
} from './choices';
import { Field, inputProps, fieldTestId } from './fields';
import { showSubmitDialog } from './formdialog';
import { JobFormFrame, JobNameField, ParametersSection } from './jobfields';
import { IJobFormOptions, IJobFormProps, useJobForm } from './jobform';
import type { IChoices, ICreateJob, IJob, OutputFormat } from './types';
import {
  blockedReason,
  IEnvRow,
  parseEnvironment,
  parseRetries,
  parseTags,
  parseTimeout
} from './validation';

/** Fields of this form a server error can name, besides the name and parameters. */
const FIELDS = [
  'project',
  'flavor',
  'gpu_type',
  'image',
  'environment',
  'timeout',
  'retries',
  'output_formats',
  'tags'
];

export interface IRunAsJobFormProps extends IJobFormProps {
  /** The notebook, relative to the server's root. */
  path: string;
}

/** The form of the Run-as-job dialog. */
export function RunAsJobForm(props: IRunAsJobFormProps): JSX.Element {
  const { client, path, trans } = props;
  const form = useJobForm(path, trans, props.onSubmitted);
  const { loadParameters, touch } = form;
  const [choices, setChoices] = React.useState<IChoices | null>(null);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  const [parametersError, setParametersError] = React.useState<string | null>(
    null
  );
  const [project, setProject] = React.useState('');
  const [flavor, setFlavor] = React.useState('');
  const [gpuType, setGpuType] = React.useState('');
  const [image, setImage] = React.useState('');
  const [envRows, setEnvRows] = React.useState<IEnvRow[]>([]);
  const [timeout, setTimeoutText] = React.useState('');
  const [retries, setRetries] = React.useState('0');
  const [formats, setFormats] = React.useState<OutputFormat[]>([]);
  const [tags, setTags] = React.useState('');

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
        if (live) {
          loadParameters(declared);
        }
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

  const projectFlavors = choices ? flavorsFor(choices, project) : [];
  const selectedFlavor = projectFlavors.find(f => f.name === flavor);
  const projectImages = choices ? imagesFor(choices, project) : [];
  const gpu = isGpuFlavor(selectedFlavor);
  const storage = choices ? storageNote(choices, trans) : null;

  // Checks of every field; the first problem blocks the submit button.
  const errors: { [field: string]: string } = { ...form.errors };
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
    if (gpuTypeMissing(selectedFlavor, gpuType)) {
      errors.gpu_type = trans.__('Choose a GPU type.');
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
    errors[field] ?? form.serverErrors[field];
  const blocked = loadError
    ? trans.__('The dialog could not load its choices.')
    : blockedReason(!choices, errors, trans);

  const submit = () => {
    if (blocked || !selectedFlavor) {
      return;
    }
    const body: ICreateJob = {
      name: form.name.trim(),
      input_path: path,
      flavor: selectedFlavor.name,
      idempotency_key: form.idempotencyKey,
      max_retries: maxRetries.ok ? maxRetries.value : 0,
      tags: parseTags(tags)
    };
    if (project) {
      body.project = project;
    }
    const requested = requestedGpuType(selectedFlavor, gpuType);
    if (requested) {
      body.gpu_type = requested; // "Any of them" names none: the allocator chooses
    }
    if (image) {
      body.image = image;
    }
    if (form.parameters.length) {
      body.parameters = form.values;
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
    void form.submit(() => client.createJob(body), FIELDS);
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
    <JobFormFrame
      testId="ai-console-form"
      intro={trans.__('Notebook: %1', path)}
      form={form}
      loadError={loadError}
      submitLabel={trans.__('Run as job')}
      blocked={blocked}
      onSubmit={submit}
      onCancel={props.onCancel}
      trans={trans}
    >
      {storage ? (
        <p className="jp-AIConsole-hint" data-testid="ai-console-storage-note">
          {storage}
        </p>
      ) : null}
      {choices?.simulated ? (
        <p className="jp-AIConsole-hint" data-testid="ai-console-simulated">
          {trans.__('The GPUs of this hub are simulated: jobs run on the CPU.')}
        </p>
      ) : null}

      <JobNameField form={form} error={errorOf('name')} trans={trans} />

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
            {gpuTypeOptions(selectedFlavor, trans).map(option => (
              <option key={option.value} value={option.value}>
                {option.label}
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

      <ParametersSection
        form={form}
        errorOf={errorOf}
        loadError={parametersError}
        trans={trans}
      />

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
    </JobFormFrame>
  );
}

export interface IRunAsJobDialogOptions extends IJobFormOptions {
  /** The notebook, relative to the server's root. */
  path: string;
}

/** Opens the Run-as-job dialog; resolves with the job created, or null. */
export function showRunAsJobDialog(
  options: IRunAsJobDialogOptions
): Promise<IJob | null> {
  return showSubmitDialog<IJob>({
    title: options.trans.__('Run as job'),
    testId: 'ai-console-dialog',
    render: handlers => <RunAsJobForm {...options} {...handlers} />
  });
}
