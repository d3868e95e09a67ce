/**
 * AI Console for JupyterLab: run a notebook as a job (toolbar button, file
 * browser context menu, command palette), follow jobs in the Jobs panel and
 * their detail views, and get notified when one completes or fails; the GPU
 * slice of this server in the status bar.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IToolbarWidgetRegistry,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar, showPopup } from '@jupyterlab/statusbar';
import type { Popup } from '@jupyterlab/statusbar';
import { ITranslator } from '@jupyterlab/translation';
import { ToolbarButton } from '@jupyterlab/ui-components';

import { JobDetailWidget } from './detail';
import { showRunAsJobDialog } from './dialog';
import { jobsIcon, runAsJobIcon } from './icons';
import { JobsModel } from './model';
import { announceFinishedJobs, notifySubmitted } from './notifications';
import { JobsPanel } from './panel';
import { AIConsoleClient } from './request';
import { showRerunDialog } from './rerun';
import {
  IdleNotifier,
  SliceStatusItem,
  SliceStatusModel,
  SliceStatusPanel
} from './slicestatus';
import { CommandIDs, IAIConsoleJobs, TRANSLATION_DOMAIN } from './tokens';

const PACKAGE = 'jupyterhub-ai-console';

/** The Jobs panel, the job detail views and the finished-job notifications. */
const jobsPlugin: JupyterFrontEndPlugin<IAIConsoleJobs> = {
  id: `${PACKAGE}:jobs`,
  description: 'The Jobs panel, job detail views and job notifications.',
  autoStart: true,
  requires: [ITranslator],
  optional: [ILayoutRestorer, ISettingRegistry, ICommandPalette],
  provides: IAIConsoleJobs,
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ): IAIConsoleJobs => {
    const trans = translator.load(TRANSLATION_DOMAIN);
    const client = new AIConsoleClient(app.serviceManager.serverSettings);
    const model = new JobsModel({ client });
    const tracker = new WidgetTracker<MainAreaWidget<JobDetailWidget>>({
      namespace: 'ai-console-job'
    });

    const currentUser = () =>
      app.serviceManager.user?.identity?.username ??
      PageConfig.getOption('hubUser') ??
      '';

    /** A new detail view of the job, added to the main area. */
    const createDetail = (jobId: string): MainAreaWidget<JobDetailWidget> => {
      const content = new JobDetailWidget({
        jobId,
        client,
        model,
        trans,
        actions: {
          openFile: path =>
            void app.commands.execute('docmanager:open', { path }),
          rerun: job =>
            void showRerunDialog({ client, job, trans }).then(created => {
              if (created) {
                model.update(created);
                notifySubmitted(created, trans, openJob);
                openJob(created.job_id);
              }
            })
        }
      });
      const widget = new MainAreaWidget({ content });
      widget.id = `ai-console-job-${jobId}`;
      widget.title.icon = jobsIcon;
      widget.title.closable = true;
      const retitle = () => {
        const job = model.get(jobId);
        widget.title.label = job
          ? trans.__('Job: %1', job.name)
          : trans.__('Job %1', jobId);
        widget.title.caption = job?.input_path ?? jobId;
      };
      retitle();
      model.changed.connect(retitle);
      widget.disposed.connect(() => model.changed.disconnect(retitle));
      void tracker.add(widget);
      app.shell.add(widget, 'main');
      return widget;
    };

    /** Shows the job's detail view, opening one if there is none yet. */
    const openDetail = (jobId: string): MainAreaWidget<JobDetailWidget> => {
      const widget =
        tracker.find(w => w.content.jobId === jobId) ?? createDetail(jobId);
      app.shell.activateById(widget.id);
      return widget;
    };

    const panel = new JobsPanel({
      model,
      trans,
      currentUser,
      openJob: jobId => void openDetail(jobId)
    });

    /** Shows the Jobs panel and the job. */
    const openJob = (jobId: string) => {
      app.shell.activateById(panel.id);
      openDetail(jobId);
    };

    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, 'ai-console-jobs-panel');
      void restorer.restore(tracker, {
        command: CommandIDs.openJob,
        args: widget => ({ id: widget.content.jobId, reveal: false }),
        name: widget => widget.content.jobId
      });
    }

    app.commands.addCommand(CommandIDs.openJob, {
      label: args =>
        args.id
          ? trans.__('Open job %1', String(args.id))
          : trans.__('Open job'),
      describedBy: {
        args: {
          type: 'object',
          properties: {
            id: { type: 'string', description: 'The job id' },
            reveal: { type: 'boolean', description: 'Also show the Jobs panel' }
          },
          required: ['id']
        }
      },
      execute: args => {
        const id = String(args.id ?? '');
        if (!id) {
          return;
        }
        if (args.reveal === false) {
          openDetail(id);
        } else {
          openJob(id);
        }
      }
    });
    app.commands.addCommand(CommandIDs.openJobs, {
      label: trans.__('Show jobs'),
      caption: trans.__('Show the Jobs panel'),
      icon: jobsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refreshJobs, {
      label: trans.__('Refresh jobs'),
      execute: () => model.refresh()
    });
    if (palette) {
      const category = trans.__('AI Console');
      palette.addItem({ command: CommandIDs.openJobs, category });
      palette.addItem({ command: CommandIDs.refreshJobs, category });
    }

    announceFinishedJobs(model, trans, openJob);

    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        const interval = Number(settings.get('pollInterval').composite);
        const background = Number(
          settings.get('backgroundPollInterval').composite
        );
        model.setIntervals(interval * 1000, background * 1000);
      };
      settingRegistry
        .load(jobsPlugin.id)
        .then(settings => {
          apply(settings);
          settings.changed.connect(apply);
        })
        .catch(reason =>
          console.warn('ai-console: could not load the jobs settings', reason)
        );
    }

    return { client, model, openJob };
  }
};

/** The Run-as-job command: notebook toolbar, file browser menu, palette. */
const runAsJobPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:plugin`,
  description: 'Run a notebook as a job on a GPU slice.',
  autoStart: true,
  requires: [ITranslator, IAIConsoleJobs],
  optional: [
    INotebookTracker,
    IFileBrowserFactory,
    ICommandPalette,
    IToolbarWidgetRegistry
  ],
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator,
    jobs: IAIConsoleJobs,
    notebooks: INotebookTracker | null,
    browsers: IFileBrowserFactory | null,
    palette: ICommandPalette | null,
    toolbarRegistry: IToolbarWidgetRegistry | null
  ): void => {
    const trans = translator.load(TRANSLATION_DOMAIN);

    /** The notebook selected in the file browser. */
    const selectedNotebook = (): string | null => {
      const browser = browsers?.tracker.currentWidget;
      if (!browser) {
        return null;
      }
      for (const item of browser.selectedItems()) {
        if (item.type === 'notebook' || item.path.endsWith('.ipynb')) {
          return item.path;
        }
      }
      return null;
    };

    /** The notebook the command applies to. */
    const targetPath = (args: { [key: string]: unknown }): string | null => {
      if (typeof args.path === 'string' && args.path) {
        return args.path;
      }
      if (args.source === 'filebrowser') {
        return selectedNotebook();
      }
      return notebooks?.currentWidget?.context.path ?? null;
    };

    app.commands.addCommand(CommandIDs.runAsJob, {
      label: trans.__('Run as job'),
      caption: trans.__(
        'Run this notebook as a job: it keeps running when you close the browser'
      ),
      icon: runAsJobIcon,
      describedBy: {
        args: {
          type: 'object',
          properties: {
            path: { type: 'string', description: 'The notebook to run' },
            source: { type: 'string', enum: ['filebrowser'] }
          }
        }
      },
      isEnabled: args => targetPath(args) !== null,
      execute: async args => {
        const path = targetPath(args);
        if (!path) {
          Notification.warning(trans.__('Open or select a notebook first.'));
          return;
        }
        // The job runs a snapshot of the file on disk: save unsaved edits first.
        const open = notebooks?.find(panel => panel.context.path === path);
        if (open?.context.model.dirty && !open.context.model.readOnly) {
          await open.context.save();
        }
        const job = await showRunAsJobDialog({
          client: jobs.client,
          path,
          trans
        });
        if (job) {
          jobs.model.update(job);
          notifySubmitted(job, trans, jobs.openJob);
        }
      }
    });

    if (palette) {
      palette.addItem({
        command: CommandIDs.runAsJob,
        category: trans.__('AI Console')
      });
    }

    const createButton = (panel: NotebookPanel) =>
      new ToolbarButton({
        icon: runAsJobIcon,
        label: trans.__('Run as job'),
        tooltip: trans.__('Run this notebook as a job'),
        dataset: { testid: 'ai-console-run-as-job' },
        onClick: () =>
          void app.commands.execute(CommandIDs.runAsJob, {
            path: panel.context.path
          })
      });
    if (toolbarRegistry) {
      // Placed by "jupyter.lab.toolbars" in schema/plugin.json.
      toolbarRegistry.addFactory<NotebookPanel>(
        'Notebook',
        'ai-console-run-as-job',
        createButton
      );
    } else {
      app.docRegistry.addWidgetExtension('Notebook', {
        createNew: (panel: NotebookPanel) => {
          const button = createButton(panel);
          panel.toolbar.insertItem(10, 'ai-console-run-as-job', button);
          return button;
        }
      });
    }
  }
};

/** The server's GPU slice in the status bar, with a detail panel. */
const sliceStatusPlugin: JupyterFrontEndPlugin<void> = {
  id: `${PACKAGE}:slice-status`,
  description: "The status bar item showing this server's GPU slice.",
  autoStart: true,
  requires: [ITranslator, IAIConsoleJobs],
  optional: [IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    translator: ITranslator,
    jobs: IAIConsoleJobs,
    statusBar: IStatusBar | null
  ): void => {
    if (!statusBar) {
      return; // a Lab without a status bar: nothing to show the slice in
    }
    const trans = translator.load(TRANSLATION_DOMAIN);
    const model = new SliceStatusModel({ client: jobs.client });
    // Warns once when the hub starts counting down to stopping the idle server.
    new IdleNotifier({ model, trans });
    let popup: Popup | null = null;
    const toggle = () => {
      if (popup && !popup.isDisposed) {
        popup.dispose();
        popup = null;
        return;
      }
      void model.refresh();
      const body = new SliceStatusPanel({
        model,
        trans,
        openJobs: () => {
          popup?.dispose();
          popup = null;
          void app.commands.execute(CommandIDs.openJobs);
        }
      });
      popup = showPopup({ body, anchor: item, align: 'left' });
    };
    const item = new SliceStatusItem({ model, trans, onClick: toggle });
    statusBar.registerStatusItem(sliceStatusPlugin.id, {
      item,
      align: 'left',
      rank: 50,
      isActive: () => model.status !== null,
      activeStateChanged: model.changed
    });
  }
};

export default [jobsPlugin, runAsJobPlugin, sliceStatusPlugin];
