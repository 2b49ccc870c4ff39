/**
 * A coloured badge on every cell that has a role, kept in step with the cell's tags
 * whoever changes them (the role picker, JupyterLab's tag editor, undo, a collaborator).
 */
import { Cell } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';

import { roleOf } from './roles';

const BADGE_CLASS = 'jp-nbprod-badge';

/** Put the badge of `cell`'s role on it, or take it off. */
export function renderBadge(cell: Cell): void {
  const role = roleOf(cell.model);
  let badge = cell.node.querySelector<HTMLElement>(`:scope > .${BADGE_CLASS}`);
  if (!role) {
    cell.node.removeAttribute('data-nbprod-role');
    badge?.remove();
    return;
  }
  cell.node.setAttribute('data-nbprod-role', role);
  if (!badge) {
    badge = document.createElement('div');
    badge.className = BADGE_CLASS;
    cell.node.appendChild(badge);
  }
  badge.textContent = role;
  badge.title = `nbprod role: ${role} (a cell tag)`;
  badge.dataset.nbprodBadge = role;
}

/** Keep the badges of one notebook up to date; stops when the notebook is disposed. */
export function trackBadges(notebook: Notebook): void {
  const watched = new WeakSet<Cell>();
  const update = (): void => {
    for (const cell of notebook.widgets) {
      if (!watched.has(cell)) {
        watched.add(cell);
        cell.model.metadataChanged.connect(() => renderBadge(cell));
      }
      renderBadge(cell);
    }
  };
  let pending = 0;
  // Cell widgets are created by the notebook's own handler of the same change: look
  // once it has run.
  const schedule = (): void => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(update);
  };
  const onModel = (): void => {
    notebook.model?.cells.changed.connect(schedule);
    schedule();
  };
  notebook.modelChanged.connect(onModel);
  onModel();
}
