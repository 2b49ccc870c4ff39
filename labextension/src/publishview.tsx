/**
 * Publish: choose a run (or the best by a metric), a version and a target; follow the
 * steps; on success the wheel, its tests' result and the model card; on failure the
 * step that failed and its output.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { FINISHED, IJob } from './api';
import { NbprodModel } from './model';
import { CancelButton, JobFailure } from './sweepview';

const ONNX_TITLE =
  'Also ship the models converted to ONNX Runtime; each is used only where it predicts ' +
  'exactly what the notebook did (needs nbprod[onnx])';

function Markdown(props: { text: string; rendermime: IRenderMimeRegistry | null }): JSX.Element {
  const { text, rendermime } = props;
  const host = React.useRef<HTMLDivElement>(null);
  // A layout effect: its clean-up runs before React takes the host out of the page (a
  // passive one runs after, and Lumino refuses to detach a widget no longer in the page,
  // which threw and blanked the panel when a second publish replaced the model card).
  React.useLayoutEffect(() => {
    const node = host.current;
    if (!node || !rendermime || !node.isConnected) {
      return;
    }
    const renderer = rendermime.createRenderer('text/markdown');
    void renderer.renderModel(rendermime.createModel({ data: { 'text/markdown': text } }));
    Widget.attach(renderer, node);
    return () => renderer.dispose();
  }, [text, rendermime]);
  return (
    <div ref={host} className="jp-nbprod-card" data-nbprod-model-card="">
      {!rendermime && <pre>{text}</pre>}
    </div>
  );
}

function Steps(props: { job: IJob }): JSX.Element {
  const { job } = props;
  const steps = job.progress.steps ?? [];
  const failedStep = job.status === 'failed' ? (job.error?.step ?? steps[steps.length - 1]) : null;
  return (
    <ol className="jp-nbprod-steps">
      {steps.map((step, i) => {
        let state = 'done';
        if (step === failedStep && i === steps.length - 1) {
          state = 'failed';
        } else if (!FINISHED.includes(job.status) && i === steps.length - 1) {
          state = 'running';
        }
        return (
          <li key={i} data-nbprod-step={state}>
            <span className={`jp-nbprod-step-${state}`}>
              {{ done: '✓', running: '…', failed: '✗' }[state]}
            </span>{' '}
            {step}
          </li>
        );
      })}
    </ol>
  );
}

function PublishResult(props: {
  job: IJob;
  rendermime: IRenderMimeRegistry | null;
}): JSX.Element | null {
  const { job, rendermime } = props;
  if (job.status === 'succeeded' && job.result) {
    const { package: name, version, files = [], tests, uploaded_to = [], model_card } = job.result;
    const wheels = files.filter((file): file is string => !!file && file.endsWith('.whl'));
    const others = files.filter((file): file is string => !!file && !file.endsWith('.whl'));
    return (
      <div className="jp-nbprod-published" data-nbprod-published="">
        <div>
          published <b>{name}</b> {version}
        </div>
        {wheels.map(wheel => (
          <div key={wheel}>
            wheel <code data-nbprod-wheel="">{wheel}</code>
          </div>
        ))}
        {others.map(file => (
          <div key={file} className="jp-nbprod-muted">
            {file}
          </div>
        ))}
        {tests && (
          <div data-nbprod-tests="">
            tests in a clean venv: <b>{tests}</b>
          </div>
        )}
        {uploaded_to.map(where => (
          <div key={where}>uploaded to {where}</div>
        ))}
        {model_card && <Markdown text={model_card} rendermime={rendermime} />}
      </div>
    );
  }
  if (job.status === 'failed' && job.error) {
    const { step, message, hint, output } = job.error;
    return (
      <div className="jp-nbprod-failure" data-nbprod-publish-error="">
        {step && <div>failed at: {step}</div>}
        <div>{message}</div>
        {hint && <div>fix: {hint}</div>}
        {output && <pre className="jp-nbprod-output">{output}</pre>}
      </div>
    );
  }
  if (job.status === 'cancelled') {
    return <div className="jp-nbprod-muted">cancelled</div>;
  }
  return null;
}

export function PublishView(props: {
  model: NbprodModel;
  rendermime: IRenderMimeRegistry | null;
}): JSX.Element {
  const { model, rendermime } = props;
  const succeeded = model.runs.filter(run => run.status === 'succeeded');
  const metrics = [...new Set(succeeded.flatMap(run => Object.keys(run.metrics)))];
  const choices = [
    ...metrics.map(name => ({ value: `best:${name}`, label: `best by ${name}` })),
    { value: 'latest', label: 'latest run' },
    // Listed all the same: publishing one says why the server refuses it.
    ...succeeded.map(run => ({
      value: run.id,
      label: `run ${run.id}${(run.not_extractable ?? []).length ? ' (not extractable)' : ''}`
    }))
  ];
  const [run, setRun] = React.useState('');
  const [version, setVersion] = React.useState('');
  const [target, setTarget] = React.useState<'folder' | 'index'>('folder');
  const [dist, setDist] = React.useState('dist');
  const [repository, setRepository] = React.useState('');
  const [onnx, setOnnx] = React.useState(false);
  const chosen = choices.some(choice => choice.value === run) ? run : (choices[0]?.value ?? '');
  const job = model.publish;
  const busy = job !== null && !FINISHED.includes(job.status);

  const submit = (event: React.FormEvent): void => {
    event.preventDefault();
    void model.startPublish({
      run: chosen,
      version: version.trim() || null,
      dist: dist.trim() || 'dist',
      repository: target === 'index' ? repository.trim() || null : null,
      onnx
    });
  };

  return (
    <section className="jp-nbprod-section" data-nbprod-section="publish">
      <h3>Publish</h3>
      {succeeded.length === 0 ? (
        <div className="jp-nbprod-muted">no successful run to publish yet</div>
      ) : (
        <form className="jp-nbprod-form" onSubmit={submit}>
          <label>
            run
            <select
              className="jp-mod-styled"
              data-nbprod-publish-run=""
              value={chosen}
              onChange={event => setRun(event.target.value)}
            >
              {choices.map(choice => (
                <option key={choice.value} value={choice.value}>
                  {choice.label}
                </option>
              ))}
            </select>
          </label>
          <label>
            version
            <input
              className="jp-mod-styled"
              data-nbprod-publish-version=""
              placeholder="automatic (from the run)"
              value={version}
              onChange={event => setVersion(event.target.value)}
            />
          </label>
          <fieldset className="jp-nbprod-target">
            <label className="jp-nbprod-inline">
              <input
                type="radio"
                name="nbprod-target"
                checked={target === 'folder'}
                onChange={() => setTarget('folder')}
              />
              folder
            </label>
            <label className="jp-nbprod-inline">
              <input
                type="radio"
                name="nbprod-target"
                data-nbprod-target-index=""
                checked={target === 'index'}
                onChange={() => setTarget('index')}
              />
              package index
            </label>
          </fieldset>
          <label>
            dist folder
            <input
              className="jp-mod-styled"
              data-nbprod-publish-dist=""
              value={dist}
              onChange={event => setDist(event.target.value)}
            />
          </label>
          {target === 'index' && (
            <label>
              index
              <input
                className="jp-mod-styled"
                data-nbprod-publish-repository=""
                placeholder="upload URL or a name from ~/.pypirc"
                value={repository}
                onChange={event => setRepository(event.target.value)}
              />
            </label>
          )}
          <label className="jp-nbprod-inline" title={ONNX_TITLE}>
            <input
              type="checkbox"
              data-nbprod-publish-onnx=""
              checked={onnx}
              onChange={event => setOnnx(event.target.checked)}
            />
            Fast path (ONNX)
          </label>
          <button
            type="submit"
            className="jp-mod-styled jp-mod-accept"
            data-nbprod-action="publish"
            disabled={busy || !chosen}
          >
            Publish
          </button>
        </form>
      )}
      <JobFailure model={model} kind="publish" />
      {job && (
        <div
          className="jp-nbprod-progress"
          data-nbprod-job="publish"
          data-nbprod-job-status={job.status}
        >
          <div>
            publish: <b>{job.status}</b>
            {busy && <CancelButton job={job} model={model} />}
          </div>
          <Steps job={job} />
          <PublishResult job={job} rendermime={rendermime} />
        </div>
      )}
    </section>
  );
}
