/**
 * What the side panel shows for the current notebook: its check (re-run after edits,
 * debounced, and on save), its runs, and its latest sweep and publish jobs (polled
 * while they run). The panel's React views only render this and call its methods.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { ISignal, Signal } from '@lumino/signaling';

import { FINISHED, ICheck, IJob, IPublishOptions, IRun, NbprodAPI } from './api';
import { ApiError } from './request';

export const CHECK_DELAY = 600; // ms after the last edit
const POLL = 1000; // ms between two looks at a running job

export interface IFailure {
  message: string;
  hint: string | null;
}

function failure(error: unknown): IFailure {
  if (error instanceof ApiError) {
    return { message: error.message, hint: error.hint };
  }
  return { message: String(error), hint: null };
}

/** The notebook as the check needs it: outputs are dead weight for static analysis. */
function withoutOutputs(content: any): any {
  const cells = (content.cells ?? []).map((cell: any) =>
    cell.cell_type === 'code' ? { ...cell, outputs: [], execution_count: null } : cell
  );
  return { ...content, cells };
}

export class NbprodModel {
  constructor(
    private readonly api: NbprodAPI,
    tracker: INotebookTracker
  ) {
    tracker.currentChanged.connect((_, panel) => this.follow(panel));
    this.follow(tracker.currentWidget);
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get panel(): NotebookPanel | null {
    return this._panel;
  }

  /** The notebook's path relative to the server root (what every route takes). */
  get path(): string | null {
    return this._panel?.context.localPath ?? null;
  }

  check: ICheck | null = null;
  checking = false;
  checkFailure: IFailure | null = null;

  runs: IRun[] = [];
  sort: string | null = null;
  runsFailure: IFailure | null = null;

  sweep: IJob | null = null;
  publish: IJob | null = null;
  jobFailure: { kind: 'sweep' | 'publish'; failure: IFailure } | null = null;

  /** Check the notebook as it is in the editor now (saved or not). */
  async runCheck(): Promise<void> {
    const panel = this._panel;
    const path = this.path;
    if (!panel || !panel.model || path === null) {
      return;
    }
    const ticket = ++this._checkTicket;
    this.checking = true;
    this._changed.emit();
    try {
      const result = await this.api.check(path, withoutOutputs(panel.model.toJSON()));
      if (ticket === this._checkTicket && panel === this._panel) {
        this.check = result;
        this.checkFailure = null;
      }
    } catch (error) {
      if (ticket === this._checkTicket && panel === this._panel) {
        this.checkFailure = failure(error);
      }
    }
    if (ticket === this._checkTicket) {
      this.checking = false;
      this._changed.emit();
    }
  }

  scheduleCheck(delay = CHECK_DELAY): void {
    window.clearTimeout(this._checkTimer);
    this._checkTimer = window.setTimeout(() => void this.runCheck(), delay);
  }

  async refreshRuns(): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    try {
      const runs = await this.api.runs(path, this.sort);
      if (path === this.path) {
        this.runs = runs;
        this.runsFailure = null;
      }
    } catch (error) {
      if (path === this.path) {
        this.runsFailure = failure(error);
      }
    }
    this._changed.emit();
  }

  setSort(metric: string | null): void {
    this.sort = metric;
    void this.refreshRuns();
  }

  /** `axes`: {parameter: [JSON text of each value]} (see NbprodAPI.sweep). */
  async startSweep(axes: { [name: string]: string[] }, smoke: boolean): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    await this.start('sweep', () => this.api.sweep(path, axes, smoke));
  }

  async startPublish(options: IPublishOptions): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    await this.start('publish', () => this.api.publish(path, options));
  }

  async cancel(job: IJob): Promise<void> {
    try {
      this.remember(await this.api.cancel(job.id));
    } catch (error) {
      this.jobFailure = { kind: job.kind, failure: failure(error) };
      this._changed.emit();
    }
  }

  /** Select the cell (1-based over all cells), scroll to it, cursor on `line`. */
  async jumpTo(cellNumber: number | null, line: number | null): Promise<void> {
    const panel = this._panel;
    if (!panel || cellNumber === null) {
      return;
    }
    const notebook = panel.content;
    const index = cellNumber - 1;
    if (index < 0 || index >= notebook.widgets.length) {
      return;
    }
    notebook.mode = 'command';
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    await notebook.scrollToItem(index, 'center');
    const cell = notebook.widgets[index];
    if (line !== null && cell.editor) {
      const lines = cell.model.sharedModel.getSource().split('\n').length;
      cell.editor.setCursorPosition({ line: Math.min(line, lines) - 1, column: 0 });
    }
    notebook.activate();
  }

  private async start(kind: 'sweep' | 'publish', submit: () => Promise<IJob>): Promise<void> {
    this.jobFailure = null;
    try {
      // Jobs read the notebook file: run what the user sees.
      if (this._panel?.context.model.dirty) {
        await this._panel.context.save();
      }
      this.remember(await submit());
    } catch (error) {
      this.jobFailure = { kind, failure: failure(error) };
      this._changed.emit();
    }
  }

  /** Keep `job` as the notebook's sweep or publish, and poll it until it ends. */
  private remember(job: IJob): void {
    if (job.kind === 'sweep') {
      this.sweep = job;
    } else {
      this.publish = job;
    }
    this._changed.emit();
    if (!FINISHED.includes(job.status)) {
      this.poll(job.id, this._generation);
    }
  }

  private poll(id: string, generation: number): void {
    if (this._polling.has(id)) {
      return;
    }
    this._polling.add(id);
    const step = async (): Promise<void> => {
      if (generation !== this._generation) {
        this._polling.delete(id);
        return;
      }
      let job: IJob | null = null;
      try {
        job = await this.api.job(id);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          this._polling.delete(id);
          return;
        }
      }
      if (generation !== this._generation) {
        this._polling.delete(id);
        return;
      }
      if (job) {
        const before = job.kind === 'sweep' ? this.sweep : this.publish;
        if (before?.id === job.id) {
          if (job.kind === 'sweep') {
            this.sweep = job;
          } else {
            this.publish = job;
          }
        }
        if (job.kind === 'sweep') {
          await this.refreshRuns(); // runs appear and finish while the sweep goes on
        }
        this._changed.emit();
        if (FINISHED.includes(job.status)) {
          this._polling.delete(id);
          if (job.kind === 'publish') {
            await this.refreshRuns();
          }
          return;
        }
      }
      window.setTimeout(() => void step(), POLL);
    };
    window.setTimeout(() => void step(), POLL);
  }

  /** Start following `panel` (the current notebook, or null). */
  private follow(panel: NotebookPanel | null): void {
    if (panel === this._panel) {
      return;
    }
    if (panel && panel.context.path !== panel.context.localPath) {
      // Not a file of the server (e.g. a run's executed notebook, nbprod-run:...):
      // keep showing the notebook it came from.
      return;
    }
    if (this._panel) {
      this._panel.model?.contentChanged.disconnect(this.onEdit, this);
      this._panel.context.saveState.disconnect(this.onSave, this);
    }
    this._panel = panel;
    this._generation++;
    window.clearTimeout(this._checkTimer);
    this.check = null;
    this.checkFailure = null;
    this.runs = [];
    this.runsFailure = null;
    this.sort = null;
    this.sweep = null;
    this.publish = null;
    this.jobFailure = null;
    this._changed.emit();
    if (!panel) {
      return;
    }
    void panel.context.ready.then(() => {
      if (panel !== this._panel) {
        return;
      }
      panel.model?.contentChanged.connect(this.onEdit, this);
      panel.context.saveState.connect(this.onSave, this);
      void this.runCheck();
      void this.refreshRuns();
      void this.findJobs(panel);
    });
  }

  private onEdit(): void {
    this.scheduleCheck();
  }

  private onSave(_: DocumentRegistry.IContext<any>, state: DocumentRegistry.SaveState): void {
    if (state === 'completed') {
      window.clearTimeout(this._checkTimer);
      void this.runCheck();
      void this.refreshRuns();
    }
  }

  /** The notebook's latest sweep and publish, e.g. still running after a reload. */
  private async findJobs(panel: NotebookPanel): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    let jobs: IJob[];
    try {
      jobs = await this.api.jobs(path);
    } catch {
      return; // the panel works without: only new jobs are shown then
    }
    if (panel !== this._panel) {
      return;
    }
    const latest = (kind: string): IJob | undefined =>
      jobs.filter(job => job.kind === kind).sort((a, b) => b.created - a.created)[0];
    for (const job of [latest('sweep'), latest('publish')]) {
      const shown = job && (job.kind === 'sweep' ? this.sweep : this.publish);
      if (job && !shown) {
        this.remember(job);
      }
    }
  }

  private _panel: NotebookPanel | null = null;
  private _changed = new Signal<this, void>(this);
  private _checkTimer = 0;
  private _checkTicket = 0;
  private _generation = 0;
  private _polling = new Set<string>();
}
