/**
 * The nbprod side panel: one view of NbprodModel for the current notebook.
 */
import { ReactWidget, UseSignal } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { ProblemsView, StagesView } from './checkview';
import { NbprodModel } from './model';
import { PublishView } from './publishview';
import { RunsView, SweepView } from './sweepview';

function PanelView(props: {
  model: NbprodModel;
  commands: CommandRegistry;
  rendermime: IRenderMimeRegistry | null;
}): JSX.Element {
  const { model, commands, rendermime } = props;
  const path = model.path;
  if (path === null) {
    return (
      <div className="jp-nbprod-empty">
        Open a notebook: its cell roles are checked here, and it can be swept and published.
      </div>
    );
  }
  return (
    // A new notebook gets fresh forms: `key` remounts the views.
    <div className="jp-nbprod-body" key={path} data-nbprod-path={path}>
      <div className="jp-nbprod-notebook" title={path}>
        {path}
      </div>
      <ProblemsView model={model} />
      <StagesView model={model} />
      <SweepView model={model} />
      <RunsView model={model} commands={commands} />
      <PublishView model={model} rendermime={rendermime} />
    </div>
  );
}

export class NbprodPanel extends ReactWidget {
  constructor(
    private readonly model: NbprodModel,
    private readonly commands: CommandRegistry,
    private readonly rendermime: IRenderMimeRegistry | null
  ) {
    super();
    this.id = 'nbprod-panel';
    this.addClass('jp-nbprod-Panel');
    this.title.caption = 'nbprod';
  }

  render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => (
          <PanelView model={this.model} commands={this.commands} rendermime={this.rendermime} />
        )}
      </UseSignal>
    );
  }
}
