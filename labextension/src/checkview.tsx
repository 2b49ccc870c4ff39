/**
 * The check's results: problems and warnings (click one to land on its cell), and the
 * stages with the artifacts that cross from training to prediction.
 */
import * as React from 'react';

import { ICheck, IProblem } from './api';
import { NbprodModel } from './model';
import { PREDICTION_ROLES, Role, TRAINING_ROLES } from './roles';

/** `cell 7 (train), line 3`, as nbprod names a place; empty without a cell. */
export function where(problem: IProblem): string {
  const parts: string[] = [];
  if (problem.cell !== null) {
    parts.push(`cell ${problem.cell}` + (problem.role ? ` (${problem.role})` : ''));
  }
  if (problem.line !== null) {
    parts.push(`line ${problem.line}`);
  }
  return parts.join(', ');
}

function ProblemItem(props: { problem: IProblem; model: NbprodModel }): JSX.Element {
  const { problem, model } = props;
  const severity = problem.severity === 'error' ? 'error' : 'warning';
  const place = where(problem);
  return (
    <li>
      <button
        className={`jp-nbprod-problem jp-nbprod-${severity}`}
        data-nbprod-problem={severity}
        data-nbprod-cell={problem.cell ?? ''}
        data-nbprod-name={problem.name ?? ''}
        disabled={problem.cell === null}
        title={problem.cell === null ? '' : `go to cell ${problem.cell}`}
        onClick={() => void model.jumpTo(problem.cell, problem.line)}
      >
        <span className="jp-nbprod-problem-where">{place ? `${place}: ` : ''}</span>
        <span className="jp-nbprod-problem-message">{problem.message}</span>
        {problem.hint && <span className="jp-nbprod-problem-hint">fix: {problem.hint}</span>}
      </button>
    </li>
  );
}

export function ProblemsView(props: { model: NbprodModel }): JSX.Element {
  const { model } = props;
  const check = model.check;
  let status: string;
  if (model.checkFailure) {
    status = 'check failed';
  } else if (!check) {
    status = model.checking ? 'checking…' : 'not checked yet';
  } else if (check.problems.length) {
    const n = check.problems.length;
    status = `${n} problem${n === 1 ? '' : 's'}`;
  } else {
    status = check.package ? `ok: can be extracted as ${check.package}` : 'ok';
  }
  return (
    <section className="jp-nbprod-section" data-nbprod-section="problems">
      <h3>
        Problems
        <span
          className="jp-nbprod-status"
          data-nbprod-check-status={check ? (check.ok ? 'ok' : 'problems') : 'none'}
        >
          {status}
          {model.checking && check ? ' (checking…)' : ''}
        </span>
      </h3>
      {model.checkFailure && (
        <div className="jp-nbprod-failure" data-nbprod-failure="check">
          {model.checkFailure.message}
          {model.checkFailure.hint && <div>fix: {model.checkFailure.hint}</div>}
        </div>
      )}
      {check && check.problems.length + check.warnings.length > 0 && (
        <ul className="jp-nbprod-problems">
          {check.problems.map((problem, i) => (
            <ProblemItem key={`p${i}`} problem={problem} model={model} />
          ))}
          {check.warnings.map((problem, i) => (
            <ProblemItem key={`w${i}`} problem={problem} model={model} />
          ))}
        </ul>
      )}
    </section>
  );
}

function Stage(props: { role: Role; check: ICheck; model: NbprodModel }): JSX.Element | null {
  const { role, check, model } = props;
  const summary = check.roles[role];
  if (!summary || !summary.cells.length) {
    return (
      <li className="jp-nbprod-stage jp-nbprod-stage-empty" data-nbprod-stage={role}>
        <span className="jp-nbprod-role-chip" data-role={role}>
          {role}
        </span>
        <span className="jp-nbprod-muted">no cell</span>
      </li>
    );
  }
  return (
    <li className="jp-nbprod-stage" data-nbprod-stage={role}>
      <span className="jp-nbprod-role-chip" data-role={role}>
        {role}
      </span>
      {summary.cells.map(cell => (
        <button
          key={cell}
          className="jp-nbprod-cell-link"
          title={`go to cell ${cell}`}
          onClick={() => void model.jumpTo(cell, null)}
        >
          {cell}
        </button>
      ))}
      {summary.outputs.length > 0 && (
        <div className="jp-nbprod-names" title="names this stage defines">
          → {summary.outputs.join(', ')}
        </div>
      )}
    </li>
  );
}

export function StagesView(props: { model: NbprodModel }): JSX.Element | null {
  const { model } = props;
  const check = model.check;
  if (!check) {
    return null;
  }
  const entry = check.entry_point;
  return (
    <section className="jp-nbprod-section" data-nbprod-section="stages">
      <h3>Stages</h3>
      <div className="jp-nbprod-graph">
        <h4>training</h4>
        <ol>
          {TRAINING_ROLES.map(role => (
            <Stage key={role} role={role} check={check} model={model} />
          ))}
        </ol>
        <div className="jp-nbprod-artifacts" data-nbprod-artifacts="">
          <span className="jp-nbprod-muted" title="what training must save and prediction loads">
            artifacts ↓
          </span>
          {check.artifacts.length ? (
            check.artifacts.map(artifact => (
              <button
                key={artifact.name}
                className="jp-nbprod-artifact"
                data-nbprod-artifact={artifact.name}
                title={`defined in cell ${artifact.cell} (${artifact.role}), line ${artifact.line}`}
                onClick={() => void model.jumpTo(artifact.cell, artifact.line)}
              >
                {artifact.name}
              </button>
            ))
          ) : (
            <span className="jp-nbprod-muted">none</span>
          )}
        </div>
        <h4>prediction</h4>
        <ol>
          {PREDICTION_ROLES.map(role => (
            <Stage key={role} role={role} check={check} model={model} />
          ))}
        </ol>
        {entry && (
          <div className="jp-nbprod-entry" data-nbprod-entry-point={entry.name}>
            entry point <code>{entry.signature}</code>
          </div>
        )}
      </div>
    </section>
  );
}
