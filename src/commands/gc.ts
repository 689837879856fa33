import {Flags} from '@oclif/core'

import {LakeCommand} from '../cli/lakeCommand.js'
import {formatBytes} from '../cli/table.js'
import {collectGarbage, GcResult} from '../lake/gc.js'

export default class Gc extends LakeCommand<typeof Gc> {
  static override summary = 'Remove files no commit references (leftovers of interrupted work).'

  static override description = `Removes staging folders of processes that no longer run, data files the catalog does not list, and objects no table refers to. Finishes committed work whose files were not yet moved into place. Safe to run while other mlcap commands work: objects younger than --min-age are kept, and so is every object stored since a still-running ingest, watch or etl run started (whatever --min-age says), because those write objects before the commit that references them.`

  static override examples = ['<%= config.bin %> gc --dry-run', '<%= config.bin %> gc', '<%= config.bin %> gc --min-age 0 --json']

  static override flags = {
    'dry-run': Flags.boolean({char: 'n', description: 'Only list what would be removed.'}),
    'min-age': Flags.integer({description: 'Keep unreferenced objects younger than this many seconds.', default: 3600, min: 0}),
  }

  async run(): Promise<GcResult> {
    const result = await collectGarbage(this.layout, {dryRun: this.flags['dry-run'], minAgeMs: this.flags['min-age'] * 1000})
    if (!this.jsonEnabled()) {
      const verb = result.dryRun ? 'would remove' : 'removed'
      for (const item of result.removed) this.log(`${verb}  ${item.kind.padEnd(20)} ${formatBytes(item.bytes).padStart(9)}  ${item.path}`)
      if (result.rolledForward) this.log(`finished moving ${result.rolledForward} committed file(s) into place`)
      this.log(`${result.removed.length} item(s), ${formatBytes(result.bytes)} ${result.dryRun ? 'would be freed' : 'freed'}.`)
    }
    return result
  }
}
