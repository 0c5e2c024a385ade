/** `reconpatch models publish | list | rollback`: the model store (lib/fleet/store.ts) from the command line. */
import { DirectoryModelStore, type StoredVersion } from '../fleet/store.js';
import { ReconpatchError } from '../errors.js';
import { parseCommandArgs } from './args.js';
import { help, report } from './output.js';

const MODELS_HELP = `reconpatch models <publish|list|rollback> --store <dir> [options]

A model store keeps every published version of each model, addressed by id; workers and the
service ask it for a model's current version before each job, so publishing or rolling back
switches them between jobs.
  publish <model.rcp> --store <dir> [--id <id>]
                              add a model file (it is loaded first: one that does not load is
                              refused) and make it its id's current version; the id is the
                              model's own (set by 'fit --model-id') unless --id names another
  list --store <dir>          every model: its current version and the versions it holds
  rollback <id> --store <dir> [--to <version>]
                              make the version before the current one current again (or --to)
  --json                      JSON output (one line per model for list)`;

export async function modelsCommand(rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs({
    args: rest, allowPositionals: true,
    options: { store: { type: 'string' }, id: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const [verb, ...args] = positionals;
  if (values.help || verb === undefined) return help(MODELS_HELP, !values.help);
  if (!values.store) throw new ReconpatchError('ERR_INVALID_OPTION', `models ${verb} needs --store <dir> (the model store's folder)`);
  const store = new DirectoryModelStore(values.store);
  switch (verb) {
    case 'publish': {
      if (args.length !== 1) return help(MODELS_HELP, true);
      report(shown(await store.publish(args[0], values.id === undefined ? {} : { id: values.id })), values.json);
      return 0;
    }
    case 'list': {
      const models = await store.list();
      for (const m of models) {
        if (values.json) report({ id: m.id, current: shown(m.current), versions: m.versions.map(shown) }, true);
        else process.stdout.write(`${m.id}\t${m.current.version}\t${m.current.published}\t${m.versions.length} version${m.versions.length === 1 ? '' : 's'}\n`);
      }
      return 0;
    }
    case 'rollback': {
      if (args.length !== 1) return help(MODELS_HELP, true);
      report(shown(await store.rollback(args[0], values.to)), values.json);
      return 0;
    }
    default:
      process.stderr.write(`reconpatch: unknown models command '${verb}'\n\n${MODELS_HELP}\n`);
      return 2;
  }
}

function shown(v: StoredVersion): Record<string, unknown> {
  return { id: v.id, version: v.version, kind: v.kind, published: v.published, bytes: v.bytes, hash: v.hash, file: v.file };
}
