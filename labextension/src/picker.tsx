/**
 * The role picker in the notebook toolbar: shows the active cell's role and sets it.
 */
import { ReactWidget } from '@jupyterlab/apputils';
import { Cell } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';
import { HTMLSelect } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ROLES, Role, roleOf, setRole } from './roles';

const NONE = '-';

export class RolePicker extends ReactWidget {
  constructor(private readonly notebook: Notebook) {
    super();
    this.addClass('jp-nbprod-RolePicker');
    this.node.dataset.nbprodRolePicker = '';
    notebook.activeCellChanged.connect(this.follow, this);
    this.follow();
  }

  /** Re-render when the active cell changes, or its tags do. */
  private follow(): void {
    const cell = this.notebook.activeCell;
    if (cell !== this.watched) {
      this.watched?.model?.metadataChanged.disconnect(this.refresh, this);
      cell?.model.metadataChanged.connect(this.refresh, this);
      this.watched = cell;
    }
    this.update();
  }

  private refresh(): void {
    this.update();
  }

  private readonly onChange = (event: React.ChangeEvent<HTMLSelectElement>): void => {
    const cell = this.notebook.activeCell;
    if (!cell) {
      return;
    }
    const value = event.target.value;
    setRole(this.notebook, cell, value === NONE ? null : (value as Role));
    // Back to the notebook in command mode, where Z undoes the change.
    this.notebook.activate();
  };

  dispose(): void {
    this.watched?.model?.metadataChanged.disconnect(this.refresh, this);
    super.dispose();
  }

  render(): JSX.Element {
    const cell = this.notebook.activeCell;
    const isCode = cell?.model.type === 'code' && !this.notebook.model?.readOnly;
    const role = cell && isCode ? roleOf(cell.model) : null;
    return (
      <HTMLSelect
        className="jp-nbprod-RolePicker-select"
        data-nbprod-role-select=""
        aria-label="nbprod cell role"
        title={
          isCode
            ? 'nbprod role of the active cell (a cell tag)'
            : 'only code cells have an nbprod role'
        }
        disabled={!isCode}
        value={role ?? NONE}
        onChange={this.onChange}
        onKeyDown={event => event.key === 'Enter' && this.notebook.activate()}
      >
        <option value={NONE}>no role</option>
        {ROLES.map(name => (
          <option key={name} value={name}>
            {name}
          </option>
        ))}
      </HTMLSelect>
    );
  }

  private watched: Cell | null = null;
}
