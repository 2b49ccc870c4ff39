/**
 * Cell roles are cell tags (`metadata.tags`), read as nbprod/notebook.py reads them:
 * a tag is a role when, stripped and lower-cased, it is one of ROLES; the first such
 * tag is the cell's role; only code cells have one.
 */
import { Cell, ICellModel } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';

export const ROLES = [
  'parameters',
  'data',
  'features',
  'train',
  'metrics',
  'inference',
  'test'
] as const;
export type Role = (typeof ROLES)[number];

export const TRAINING_ROLES: Role[] = ['parameters', 'data', 'features', 'train', 'metrics'];
export const PREDICTION_ROLES: Role[] = ['features', 'inference'];

function asRole(tag: unknown): Role | null {
  const name = String(tag).trim().toLowerCase();
  return (ROLES as readonly string[]).includes(name) ? (name as Role) : null;
}

function tagsOf(model: ICellModel): string[] {
  const tags = model.getMetadata('tags');
  return Array.isArray(tags) ? tags.map(String) : [];
}

/** The cell's role, or null (untagged, or not a code cell). */
export function roleOf(model: ICellModel): Role | null {
  if (model.type !== 'code') {
    return null;
  }
  for (const tag of tagsOf(model)) {
    const role = asRole(tag);
    if (role) {
      return role;
    }
  }
  return null;
}

/** `tags` with every role tag removed and `role` (if any) added at the end. */
export function withRole(tags: string[], role: Role | null): string[] {
  const kept = tags.filter(tag => asRole(tag) === null);
  return role ? [...kept, role] : kept;
}

/**
 * Give `cell` the role `role` (null: none), keeping its other tags.
 *
 * The write is one transaction of the notebook's shared model, so the notebook's
 * undo (Edit › Undo, `Z` in command mode) takes it back like any cell operation;
 * a bare setMetadata would not be undoable.
 */
export function setRole(notebook: Notebook, cell: Cell, role: Role | null): void {
  const model = notebook.model;
  if (!model || cell.model.type !== 'code') {
    return;
  }
  const before = tagsOf(cell.model);
  const after = withRole(before, role);
  if (JSON.stringify(before) === JSON.stringify(after)) {
    return;
  }
  model.sharedModel.transact(() => {
    if (after.length) {
      cell.model.sharedModel.setMetadata('tags', after);
    } else {
      cell.model.sharedModel.deleteMetadata('tags');
    }
  });
}
