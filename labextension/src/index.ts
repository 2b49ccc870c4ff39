/**
 * nbprod in JupyterLab: a role picker in the notebook toolbar, a badge on each cell
 * with a role, and the nbprod side panel (check, stages, sweep, runs, publish). All
 * the work is done by nbprod's server extension; this only calls its routes.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';

import { NbprodAPI } from './api';
import { trackBadges } from './badges';
import { NbprodModel } from './model';
import { NbprodPanel } from './panel';
import { RolePicker } from './picker';
import { ApiError } from './request';
import { ROLES, Role, roleOf, setRole } from './roles';
import { DRIVE, RunNotebookDrive, runNotebookPath } from './rundrive';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h10l6 6v12H4z M13 4.5V10h5.5z" fill-rule="evenodd"/>
    <path d="M7 13h10v1.6H7zM7 16.2h7v1.6H7z" fill="#fff"/>
  </g>
</svg>`;

export const nbprodIcon = new LabIcon({ name: 'nbprod:icon', svgstr: ICON_SVG });

const CommandIDs = {
  setRole: 'nbprod:set-role',
  openPanel: 'nbprod:open-panel',
  openRunNotebook: 'nbprod:open-run-notebook',
  check: 'nbprod:check'
};

/** Adds the role picker to every notebook's toolbar and badges to its cells. */
class RolesExtension implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
  createNew(panel: NotebookPanel): IDisposable {
    const picker = new RolePicker(panel.content);
    if (!panel.toolbar.insertAfter('cellType', 'nbprodRole', picker)) {
      panel.toolbar.addItem('nbprodRole', picker);
    }
    trackBadges(panel.content);
    return picker;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbprod:plugin',
  description: 'Cell roles, live check, sweeps, runs and publishing for nbprod notebooks.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    app.docRegistry.addWidgetExtension('Notebook', new RolesExtension());

    const api = new NbprodAPI(app.serviceManager.serverSettings);
    const model = new NbprodModel(api, tracker);
    const drive = new RunNotebookDrive(api);
    app.serviceManager.contents.addDrive(drive);
    const panel = new NbprodPanel(model, app.commands, rendermime);
    panel.title.icon = nbprodIcon;
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'nbprod-panel');

    app.commands.addCommand(CommandIDs.setRole, {
      label: args => (args.role ? `nbprod: Set Cell Role to ${args.role}` : 'nbprod: Remove Cell Role'),
      isToggled: args => {
        const cell = tracker.activeCell;
        return !!cell && roleOf(cell.model) === ((args.role as string) || null);
      },
      isEnabled: () => tracker.activeCell?.model.type === 'code',
      execute: args => {
        const current = tracker.currentWidget;
        const cell = tracker.activeCell;
        if (current && cell) {
          setRole(current.content, cell, ((args.role as string) || null) as Role | null);
        }
      }
    });
    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'nbprod: Show Panel',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.openRunNotebook, {
      label: 'nbprod: Open the Executed Notebook of a Run',
      execute: async args => {
        const run = String(args.run);
        const notebook = String(args.notebook);
        const executed = args.executed ? String(args.executed) : null;
        const local = runNotebookPath(run, notebook);
        try {
          await drive.fetch(local);
          const widget: NotebookPanel = await app.commands.execute('docmanager:open', {
            path: `${DRIVE}:${local}`,
            factory: 'Notebook'
          });
          widget.title.label = `${widget.title.label} · run ${run.slice(-6)}`;
          // A record of what ran, read-only: it needs no kernel of its own.
          void widget.sessionContext.ready.then(() => widget.sessionContext.shutdown());
          return widget;
        } catch (error) {
          // A server that allows hidden files serves the run store's copy itself.
          if (executed) {
            try {
              await app.serviceManager.contents.get(executed, { content: false });
              return await app.commands.execute('docmanager:open', { path: executed });
            } catch {
              // hidden: report the first error
            }
          }
          const hint = error instanceof ApiError && error.hint ? `\n${error.hint}` : '';
          await showErrorMessage(
            'Cannot open the executed notebook',
            `run ${run}: ${error instanceof Error ? error.message : error}${hint}`
          );
        }
      }
    });
    app.commands.addCommand(CommandIDs.check, {
      label: 'nbprod: Check Notebook',
      isEnabled: () => tracker.currentWidget !== null,
      execute: () => model.runCheck()
    });
    if (palette) {
      const category = 'nbprod';
      palette.addItem({ command: CommandIDs.openPanel, category });
      palette.addItem({ command: CommandIDs.check, category });
      for (const role of [...ROLES, '']) {
        palette.addItem({ command: CommandIDs.setRole, args: { role }, category });
      }
    }
  }
};

export default plugin;
