/**
 * Sweep: a form built from the parameters cell, the live progress of the sweep, and
 * the runs table (sorted by a metric on the server; a failed run shows its error and
 * opens its executed notebook). Any notebook runs, as papermill runs it: one the check
 * finds problems in is swept too, and its runs are marked not extractable, with why.
 */
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { FINISHED, ICheck, IJob, IRun } from './api';
import { where } from './checkview';
import { NbprodModel } from './model';
import { parseValues, pythonLiteral } from './values';

const SHOWN_REASONS = 3; // the rest are a click away, in Problems or a tooltip

export function JobFailure(props: { model: NbprodModel; kind: 'sweep' | 'publish' }): JSX.Element | null {
  const { jobFailure } = props.model;
  if (!jobFailure || jobFailure.kind !== props.kind) {
    return null;
  }
  return (
    <div className="jp-nbprod-failure" data-nbprod-failure={props.kind}>
      <div className="jp-nbprod-failure-message">{jobFailure.failure.message}</div>
      {jobFailure.failure.hint && <div>fix: {jobFailure.failure.hint}</div>}
    </div>
  );
}

/** Cancels a running job (`data-nbprod-action="cancel-<kind>"`). */
export function CancelButton(props: { job: IJob; model: NbprodModel }): JSX.Element {
  const { job, model } = props;
  return (
    <button
      className="jp-mod-styled jp-mod-warn"
      data-nbprod-action={`cancel-${job.kind}`}
      onClick={() => void model.cancel(job)}
    >
      Cancel
    </button>
  );
}

function SweepProgress(props: { job: IJob; model: NbprodModel }): JSX.Element {
  const { job, model } = props;
  const { total = 0, done = 0, failed = 0, running = 0 } = job.progress;
  const finished = FINISHED.includes(job.status);
  return (
    <div
      className="jp-nbprod-progress"
      data-nbprod-job="sweep"
      data-nbprod-job-status={job.status}
      data-nbprod-done={done}
      data-nbprod-total={total}
    >
      <progress max={total || 1} value={done} />
      <span>
        {done}/{total} done, {failed} failed, {running} running: <b>{job.status}</b>
      </span>
      {!finished && <CancelButton job={job} model={model} />}
      {job.status === 'failed' && job.error && (
        <div className="jp-nbprod-failure">
          {job.error.message}
          {job.error.hint && <div>fix: {job.error.hint}</div>}
        </div>
      )}
    </div>
  );
}

/**
 * What the runs of a notebook the check finds problems in will be: recorded, but not
 * extractable, and why (the first problems, where they are).
 */
function NotExtractableNote(props: { check: ICheck }): JSX.Element {
  const { problems } = props.check;
  const more = problems.length - SHOWN_REASONS;
  return (
    <div className="jp-nbprod-muted jp-nbprod-note" data-nbprod-not-extractable-note="">
      The runs will be recorded as <b>not extractable</b>: extract and publish refuse them
      until the check is ok.
      {problems.length > 0 && (
        <ul className="jp-nbprod-reasons">
          {problems.slice(0, SHOWN_REASONS).map((problem, i) => {
            const place = where(problem);
            return <li key={i}>{place ? `${place}: ${problem.message}` : problem.message}</li>;
          })}
          {more > 0 && <li>and {more} more (see Problems)</li>}
        </ul>
      )}
    </div>
  );
}

export function SweepView(props: { model: NbprodModel }): JSX.Element | null {
  const { model } = props;
  const [values, setValues] = React.useState<{ [name: string]: string }>({});
  const [smoke, setSmoke] = React.useState(false);
  const check = model.check;
  const parameters = check?.parameters ?? {};
  const names = Object.keys(parameters);
  const job = model.sweep;
  const busy = job !== null && !FINISHED.includes(job.status);

  const axes = (): { [name: string]: string[] } => {
    const result: { [name: string]: string[] } = {};
    for (const name of names) {
      const typed = parseValues(values[name] ?? '');
      if (typed.length) {
        result[name] = typed;
      }
    }
    return result;
  };
  const runs = Object.values(axes()).reduce((n, list) => n * list.length, 1);
  const submit = (event: React.FormEvent): void => {
    event.preventDefault();
    void model.startSweep(axes(), smoke);
  };

  return (
    <section className="jp-nbprod-section" data-nbprod-section="sweep">
      <h3>Sweep</h3>
      <form className="jp-nbprod-form" onSubmit={submit}>
        {names.length === 0 ? (
          <div className="jp-nbprod-muted" data-nbprod-no-parameters="">
            {!check && 'not checked yet'}
            {check?.roles.parameters &&
              'the parameters cell assigns no value to sweep: Start runs the notebook once'}
            {check && !check.roles.parameters && (
              <>
                no parameters cell (tag one cell <code>parameters</code> to sweep its values):
                Start runs the notebook once
              </>
            )}
          </div>
        ) : (
          <>
            <table className="jp-nbprod-params">
              <thead>
                <tr>
                  <th>parameter</th>
                  <th>default</th>
                  <th title="Python literals separated by commas; empty: the default">
                    sweep values
                  </th>
                </tr>
              </thead>
              <tbody>
                {names.map(name => {
                  const literal = pythonLiteral(parameters[name].value, parameters[name].type);
                  return (
                    <tr key={name}>
                      <td>
                        <code>{name}</code>
                      </td>
                      <td className="jp-nbprod-muted">{literal}</td>
                      <td>
                        <input
                          className="jp-mod-styled"
                          data-nbprod-param={name}
                          placeholder={`e.g. ${literal}`}
                          value={values[name] ?? ''}
                          onChange={event => setValues({ ...values, [name]: event.target.value })}
                        />
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
            <label className="jp-nbprod-inline">
              <input
                type="checkbox"
                data-nbprod-smoke=""
                checked={smoke}
                onChange={event => setSmoke(event.target.checked)}
              />
              <span title="metadata.nbprod.smoke">smoke parameters</span>
            </label>
          </>
        )}
        {check && !check.ok && <NotExtractableNote check={check} />}
        <button
          type="submit"
          className="jp-mod-styled jp-mod-accept"
          data-nbprod-action="start-sweep"
          disabled={busy}
        >
          {names.length ? 'Start sweep' : 'Start'} ({runs} run{runs === 1 ? '' : 's'})
        </button>
      </form>
      <JobFailure model={model} kind="sweep" />
      {job && <SweepProgress job={job} model={model} />}
    </section>
  );
}

/**
 * Why the marked runs are not extractable, once per distinct list of reasons: a sweep's
 * runs share theirs, and a row each would repeat them.
 */
function NotExtractableReasons(props: { runs: IRun[] }): JSX.Element | null {
  const groups = new Map<string, IRun[]>();
  for (const run of props.runs) {
    if ((run.not_extractable ?? []).length) {
      const key = JSON.stringify(run.not_extractable);
      groups.set(key, [...(groups.get(key) ?? []), run]);
    }
  }
  if (!groups.size) {
    return null;
  }
  const named = (runs: IRun[]): string => {
    if (runs.length === props.runs.length) {
      return runs.length === 1 ? 'this run' : `all ${runs.length} runs`;
    }
    const ids = runs.slice(0, 4).map(run => run.id.slice(-6));
    const more = runs.length > ids.length ? ` and ${runs.length - ids.length} more` : '';
    return `run${runs.length === 1 ? '' : 's'} ${ids.join(', ')}${more}`;
  };
  return (
    <div className="jp-nbprod-not-extractable-reasons" data-nbprod-not-extractable-reasons="">
      {[...groups.values()].map(runs => {
        const reasons = runs[0].not_extractable;
        const more = reasons.length - SHOWN_REASONS;
        const [them, they] = runs.length === 1 ? ['it', 'it'] : ['them', 'they'];
        return (
          <div key={runs[0].id} data-nbprod-reasons-of={runs.map(run => run.id).join(' ')}>
            <b>not extractable</b>: {named(runs)} (extract and publish refuse {them}); the
            notebook had {reasons.length === 1 ? 'this problem' : 'these problems'} when {they}{' '}
            ran:
            <ul className="jp-nbprod-reasons">
              {reasons.slice(0, SHOWN_REASONS).map((reason, i) => (
                <li key={i}>{reason}</li>
              ))}
              {more > 0 && <li title={reasons.join('\n')}>and {more} more</li>}
            </ul>
          </div>
        );
      })}
    </div>
  );
}

const STATUS_MARKS: { [status: string]: string } = {
  succeeded: '✓',
  failed: '✗',
  cancelled: '⊘',
  running: '…',
  queued: '·'
};

function formatMetric(value: number | undefined): string {
  if (value === undefined) {
    return '';
  }
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}

function RunRows(props: {
  run: IRun;
  notebook: string;
  parameters: string[];
  metrics: string[];
  literal: (name: string, value: unknown) => string;
  commands: CommandRegistry;
}): JSX.Element {
  const { run, notebook, parameters, metrics, literal, commands } = props;
  const width = 3 + parameters.length + metrics.length;
  const open = (): void => {
    void commands.execute('nbprod:open-run-notebook', {
      run: run.id,
      notebook,
      executed: run.executed_path
    });
  };
  return (
    <>
      <tr data-nbprod-run={run.id} data-nbprod-run-status={run.status}>
        <td className={`jp-nbprod-run-${run.status}`} title={run.status}>
          {STATUS_MARKS[run.status] ?? run.status}
        </td>
        <td title={run.id}>
          <code>{run.id.slice(-6)}</code>
          {(run.not_extractable ?? []).length > 0 && (
            <span
              className="jp-nbprod-not-extractable"
              data-nbprod-not-extractable={run.id}
              title={[
                'not extractable: extract and publish refuse this run',
                ...run.not_extractable
              ].join('\n')}
            >
              not extractable
            </span>
          )}
        </td>
        {parameters.map(name => (
          <td key={name}>{literal(name, run.parameters[name])}</td>
        ))}
        {metrics.map(name => (
          <td key={name} data-nbprod-metric={name}>
            {formatMetric(run.metrics[name])}
          </td>
        ))}
        <td>{run.duration === null ? '' : `${run.duration.toFixed(1)} s`}</td>
      </tr>
      {run.error && (
        <tr className="jp-nbprod-run-error" data-nbprod-run-error={run.id}>
          <td colSpan={width}>
            <div className="jp-nbprod-run-error-message">
              {run.error.message ?? JSON.stringify(run.error)}
            </div>
            {run.executed_path && (
              <button
                className="jp-mod-styled"
                data-nbprod-action="open-executed"
                title={`the notebook as the run left it (${run.executed_path})`}
                onClick={open}
              >
                Open executed notebook
              </button>
            )}
          </td>
        </tr>
      )}
    </>
  );
}

export function RunsView(props: { model: NbprodModel; commands: CommandRegistry }): JSX.Element {
  const { model, commands } = props;
  const runs = model.runs;
  const declared = model.check?.parameters ?? {};
  const literal = (name: string, value: unknown): string =>
    value === undefined ? '' : pythonLiteral(value, declared[name]?.type ?? '');
  const names = new Set<string>();
  runs.forEach(run => Object.keys(run.parameters).forEach(name => names.add(name)));
  const order = Object.keys(declared);
  const all = [...names].sort(
    (a, b) => (order.indexOf(a) + 1 || 1e9) - (order.indexOf(b) + 1 || 1e9)
  );
  // Columns for the parameters that differ between runs; the others in one line.
  const varies = (name: string): boolean =>
    new Set(runs.map(run => literal(name, run.parameters[name]))).size > 1;
  const parameters = all.filter(varies);
  const constant = all.filter(name => !varies(name));
  const metrics = [...new Set(runs.flatMap(run => Object.keys(run.metrics)))];
  return (
    <section className="jp-nbprod-section" data-nbprod-section="runs">
      <h3>
        Runs
        {metrics.length > 0 && (
          <label className="jp-nbprod-inline jp-nbprod-status">
            sort by
            <select
              data-nbprod-sort=""
              value={model.sort ?? ''}
              onChange={event => model.setSort(event.target.value || null)}
            >
              <option value="">(first metric)</option>
              {metrics.map(name => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
          </label>
        )}
        <button
          className="jp-nbprod-link"
          data-nbprod-action="refresh-runs"
          title="reload the runs"
          onClick={() => void model.refreshRuns()}
        >
          ↻
        </button>
      </h3>
      {model.runsFailure && (
        <div className="jp-nbprod-failure" data-nbprod-failure="runs">
          {model.runsFailure.message}
        </div>
      )}
      {runs.length === 0 ? (
        <div className="jp-nbprod-muted">no runs yet</div>
      ) : (
        <div className="jp-nbprod-table-scroll">
          <table className="jp-nbprod-runs" data-nbprod-runs="">
            <thead>
              <tr>
                <th title="status">&nbsp;</th>
                <th>run</th>
                {parameters.map(name => (
                  <th key={name}>{name}</th>
                ))}
                {metrics.map(name => (
                  <th
                    key={name}
                    className="jp-nbprod-sortable"
                    title={`sort by ${name}`}
                    onClick={() => model.setSort(name)}
                  >
                    {name}
                    {model.sort === name ? ' ▼' : ''}
                  </th>
                ))}
                <th>time</th>
              </tr>
            </thead>
            <tbody>
              {runs.map(run => (
                <RunRows
                  key={run.id}
                  run={run}
                  notebook={model.path ?? ''}
                  parameters={parameters}
                  metrics={metrics}
                  literal={literal}
                  commands={commands}
                />
              ))}
            </tbody>
          </table>
          {constant.length > 0 && (
            <div className="jp-nbprod-muted jp-nbprod-constant">
              {runs.length > 1 ? 'in every run: ' : ''}
              {constant.map(name => `${name}=${literal(name, runs[0].parameters[name])}`).join(', ')}
            </div>
          )}
          <NotExtractableReasons runs={runs} />
        </div>
      )}
    </section>
  );
}
