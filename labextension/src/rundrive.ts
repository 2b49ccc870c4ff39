/**
 * Executed notebooks of runs, opened read-only in ordinary notebook tabs.
 *
 * They live in the run store, `.nbprod/runs/<id>/`, a hidden folder that Jupyter's
 * file API refuses by default (ContentsManager.allow_hidden). So they are read through
 * nbprod's route, `GET /nbprod/runs/<id>/notebook?path=NB`, behind a small read-only
 * drive: `nbprod-run:<run id>/<notebook path>`.
 */
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { NbprodAPI } from './api';

export const DRIVE = 'nbprod-run';

/** The path of a run's executed notebook inside the drive. */
export function runNotebookPath(runId: string, notebook: string): string {
  return `${runId}/${notebook}`;
}

function readOnly(): Promise<never> {
  return Promise.reject(new Error('an executed notebook of a run is read-only'));
}

export class RunNotebookDrive implements Contents.IDrive {
  constructor(private readonly api: NbprodAPI) {}

  readonly name = DRIVE;

  get serverSettings(): ServerConnection.ISettings {
    return this.api.settings;
  }

  get fileChanged(): ISignal<this, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    Signal.clearData(this);
  }

  /**
   * Read the notebook now, so that a missing route or run is known before a tab
   * opens; the tab's own `get` then takes this copy.
   */
  async fetch(localPath: string): Promise<void> {
    const content = await this.read(localPath);
    this._fetched.set(localPath, content);
  }

  async get(localPath: string): Promise<Contents.IModel> {
    const content = this._fetched.get(localPath) ?? (await this.read(localPath));
    this._fetched.delete(localPath);
    const notebook = localPath.slice(localPath.indexOf('/') + 1);
    const name = notebook.split('/').pop() ?? notebook;
    const now = new Date().toISOString();
    return {
      name,
      path: localPath,
      type: 'notebook',
      format: 'json',
      mimetype: 'application/x-ipynb+json',
      writable: false,
      created: now,
      last_modified: now,
      content
    };
  }

  private read(localPath: string): Promise<unknown> {
    const slash = localPath.indexOf('/');
    if (slash <= 0) {
      return Promise.reject(new Error(`not the path of a run's notebook: ${localPath}`));
    }
    return this.api.runNotebook(localPath.slice(0, slash), localPath.slice(slash + 1));
  }

  getDownloadUrl(): Promise<string> {
    return readOnly();
  }

  newUntitled(): Promise<Contents.IModel> {
    return readOnly();
  }

  delete(): Promise<void> {
    return readOnly();
  }

  rename(): Promise<Contents.IModel> {
    return readOnly();
  }

  save(): Promise<Contents.IModel> {
    return readOnly();
  }

  copy(): Promise<Contents.IModel> {
    return readOnly();
  }

  createCheckpoint(): Promise<Contents.ICheckpointModel> {
    return readOnly();
  }

  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> {
    return [];
  }

  restoreCheckpoint(): Promise<void> {
    return readOnly();
  }

  deleteCheckpoint(): Promise<void> {
    return readOnly();
  }

  private _fetched = new Map<string, unknown>();
  private _isDisposed = false;
  private _fileChanged = new Signal<this, Contents.IChangedArgs>(this);
}
