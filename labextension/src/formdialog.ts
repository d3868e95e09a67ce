/**
 * A JupyterLab dialog whose body is a React form with its own buttons, so the
 * form decides when it closes: it stays open while a request runs and after the
 * server refuses one. Escape and the close button still cancel it.
 */
import { Dialog, ReactWidget } from '@jupyterlab/apputils';

/** A `Dialog` without buttons of its own. */
class FormDialog extends Dialog<void> {
  /**
   * The base dialog resolves its default button on Enter in an input; this one
   * has none, and submitting a job is too costly to do on a stray Enter.
   */
  resolve(): void {
    // The form's own submit button is the only way to submit.
  }
}

export interface IFormDialogOptions {
  title: string;
  /** `data-testid` of the dialog element. */
  testId: string;
  /** The element focused when the dialog opens (default: the first input). */
  focusSelector?: string;
  /** Renders the form; `close` closes the dialog. */
  render: (close: () => void) => JSX.Element;
}

/** Opens a form in a modal dialog; resolves when it closes. */
export async function showFormDialog(
  options: IFormDialogOptions
): Promise<void> {
  let dialog: FormDialog | null = null;
  const close = () => dialog?.reject();
  const body = ReactWidget.create(options.render(close));
  body.addClass('jp-AIConsole-formBody');
  dialog = new FormDialog({
    title: options.title,
    body,
    buttons: [],
    hasClose: true,
    // Focus in the dialog, so Escape cancels it and typing goes to the form.
    focusNodeSelector: options.focusSelector ?? 'input, select, textarea'
  });
  dialog.addClass('jp-AIConsole-dialog');
  dialog.node.dataset.testid = options.testId;
  await dialog.launch();
}

/** What a form in a dialog calls when it is done; either closes the dialog. */
export interface IFormHandlers<T> {
  /** The form made `result`: the dialog resolves with it. */
  onSubmitted: (result: T) => void;
  /** The user gave up: the dialog resolves with null. */
  onCancel: () => void;
}

export interface ISubmitDialogOptions<T> extends Omit<
  IFormDialogOptions,
  'render'
> {
  /** Renders the form with the handlers that close the dialog. */
  render: (handlers: IFormHandlers<T>) => JSX.Element;
}

/** Opens a form in a modal dialog; resolves with what it made, or null. */
export async function showSubmitDialog<T>(
  options: ISubmitDialogOptions<T>
): Promise<T | null> {
  let result: T | null = null;
  await showFormDialog({
    ...options,
    render: close =>
      options.render({
        onSubmitted: value => {
          result = value;
          close();
        },
        onCancel: close
      })
  });
  return result;
}
