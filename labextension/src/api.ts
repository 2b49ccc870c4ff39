/**
 * The REST contract of nbprod's server extension (nbprod/jupyter/handlers.py), typed,
 * and one function per route. Nothing here decides anything: the server does.
 */
import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';

export interface IProblem {
  severity: 'error' | 'warning' | string;
  cell: number | null; // 1-based over all cells, markdown included
  role: string | null;
  line: number | null;
  name: string | null;
  message: string;
  hint: string | null;
}

export interface IParameter {
  value: unknown;
  type: string;
  cell: number;
  line: number;
}

export interface IArtifact {
  name: string;
  cell: number;
  role: string;
  line: number;
}

export interface IRoleSummary {
  cells: number[];
  inputs: string[];
  outputs: string[];
  imports: string[];
}

export interface IEntryPoint {
  name: string;
  signature: string;
  cell: number | null;
}

export interface ICheck {
  ok: boolean;
  package?: string;
  parameters: { [name: string]: IParameter };
  artifacts: IArtifact[];
  entry_point: IEntryPoint | null;
  metrics: string[];
  roles: { [role: string]: IRoleSummary };
  problems: IProblem[];
  warnings: IProblem[];
}

export interface IRunError {
  message?: string;
  cell?: number | null;
  role?: string | null;
  [key: string]: unknown;
}

export interface IRun {
  id: string;
  status: string;
  parameters: { [name: string]: unknown };
  metrics: { [name: string]: number };
  duration: number | null;
  error: IRunError | null;
  executed_path: string | null;
  sweep_id?: string | null;
  /** Why no package can be made of the run (the check's problems when it ran). */
  not_extractable: string[];
}

export interface IJobError {
  message: string;
  hint?: string | null;
  step?: string | null;
  output?: string | null;
}

export interface ISweepProgress {
  total: number;
  done: number;
  failed: number;
  running: number;
}

export interface IPublishProgress {
  steps: string[];
  current: string | null;
}

export interface IPublished {
  package: string;
  version: string;
  run_id?: string;
  files: (string | null)[];
  tests: string;
  uploaded_to: string[];
  model_card?: string | null;
}

export interface IJob {
  id: string;
  kind: 'sweep' | 'publish';
  path: string | null;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  created: number;
  progress: Partial<ISweepProgress & IPublishProgress>;
  runs: string[];
  result: (Partial<IPublished> & { runs?: IRun[]; ok?: boolean }) | null;
  error: IJobError | null;
  output: string;
}

export const FINISHED = ['succeeded', 'failed', 'cancelled'];

export interface IPublishOptions {
  run: string;
  version: string | null;
  dist: string;
  repository: string | null;
  /** Also ship the models converted to ONNX (extract's fast path). */
  onnx: boolean;
}

function post(body: string): RequestInit {
  return { method: 'POST', body, headers: { 'Content-Type': 'application/json' } };
}

export class NbprodAPI {
  constructor(readonly settings: ServerConnection.ISettings) {}

  check(path: string, notebook: unknown): Promise<ICheck> {
    return requestAPI<ICheck>('check', post(JSON.stringify({ path, notebook })), this.settings);
  }

  async runs(path: string, sort: string | null): Promise<IRun[]> {
    const query = new URLSearchParams({ path });
    if (sort) {
      query.set('sort', sort);
    }
    const reply = await requestAPI<{ runs: IRun[] }>(`runs?${query}`, {}, this.settings);
    return reply.runs;
  }

  /** The executed notebook of a run (nbformat JSON). */
  runNotebook(id: string, path: string): Promise<unknown> {
    const query = new URLSearchParams({ path });
    return requestAPI<unknown>(
      `runs/${encodeURIComponent(id)}/notebook?${query}`,
      {},
      this.settings
    );
  }

  async jobs(path: string): Promise<IJob[]> {
    const query = new URLSearchParams({ path });
    const reply = await requestAPI<{ jobs: IJob[] }>(`jobs?${query}`, {}, this.settings);
    return reply.jobs;
  }

  job(id: string): Promise<IJob> {
    return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, {}, this.settings);
  }

  cancel(id: string): Promise<IJob> {
    return requestAPI<IJob>(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' }, this.settings);
  }

  /**
   * Start a sweep. `axes` maps a parameter to its values as JSON texts: "1.0" must
   * reach Python as a float, which JSON.stringify(1.0) would turn into the int 1.
   */
  sweep(path: string, axes: { [name: string]: string[] }, smoke: boolean): Promise<IJob> {
    const parameters = Object.entries(axes)
      .map(([name, values]) => `${JSON.stringify(name)}: [${values.join(', ')}]`)
      .join(', ');
    const head = JSON.stringify({ kind: 'sweep', path, workers: null, smoke });
    const body = `${head.slice(0, -1)}, "parameters": {${parameters}}}`;
    return requestAPI<IJob>('jobs', post(body), this.settings);
  }

  publish(path: string, options: IPublishOptions): Promise<IJob> {
    const body = JSON.stringify({ kind: 'publish', path, ...options });
    return requestAPI<IJob>('jobs', post(body), this.settings);
  }
}
