/**
 * reconpatch/fleet: beyond one process. The model store (versions by id, the current one,
 * rollback) that workers and the service read models from.
 * @example
 * import { DirectoryModelStore } from 'reconpatch/fleet';
 * const store = new DirectoryModelStore('/srv/models');
 * const { version } = await store.publish('part.rcp', { id: 'line3-cam2' });
 */
export { DirectoryModelStore, loadStoredModel } from './store.js';
export type { ModelStore, StoreModel, StoredVersion } from './store.js';
