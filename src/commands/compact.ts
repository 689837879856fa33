import {Flags} from '@oclif/core'

import {LakeCommand} from '../cli/lakeCommand.js'
import {formatBytes} from '../cli/table.js'
import {COMPACT_DEFAULTS, compactLake, CompactSummary} from '../lake/compact.js'

export default class Compact extends LakeCommand<typeof Compact> {
  static override summary = 'Merge small Parquet data files into large ones (rows unchanged).'

  static override description = `Streaming commits (mlcap watch) leave many small data files, which every reader scans more slowly. Compaction rewrites a table's files with fewer than --target-rows rows into files of up to that many rows, sorted like the table, in one commit (operation 'compact'). Rows, keys and commit ids do not change.

The replaced files move out of the table folders to <lake>/_retired/, so tools reading the plain folders never see a row twice; \`mlcap gc\` deletes them once they are older than its --min-age. Safe while other commands run: readers holding an older snapshot retry on the new one. \`mlcap watch\` compacts on its own (see its --compact-after).`

  static override examples = [
    '<%= config.bin %> compact',
    '<%= config.bin %> compact --table bronze.sources --json',
    '<%= config.bin %> compact --min-files 32 --target-rows 500000',
  ]

  static override flags = {
    table: Flags.string({description: 'Compact only this table (layer.table); repeat for several. Default: every table.', multiple: true}),
    'min-files': Flags.integer({description: 'Leave a table alone unless it has at least this many small files.', default: 2, min: 2}),
    'target-rows': Flags.integer({
      description: 'Files with fewer rows are small; new files hold up to this many rows.',
      default: COMPACT_DEFAULTS.targetRows,
      min: 1,
    }),
  }

  async run(): Promise<CompactSummary> {
    const summary = await compactLake(this.layout, {
      tables: this.flags.table,
      minFiles: this.flags['min-files'],
      targetRows: this.flags['target-rows'],
    })
    if (!this.jsonEnabled()) {
      let compacted = 0
      for (const t of summary.tables) {
        if (t.commitId === null) continue
        compacted++
        this.log(
          `${t.table.padEnd(18)} ${String(t.filesBefore).padStart(5)} files → ${t.filesAfter}  ${t.rows} rows  ` +
            `${formatBytes(t.bytesBefore)} → ${formatBytes(t.bytesAfter)}  commit ${t.commitId}`,
        )
      }
      this.log(
        compacted === 0
          ? `Nothing to compact: no table has ${this.flags['min-files']} or more files under ${this.flags['target-rows']} rows.`
          : `Compacted ${compacted} table(s) in ${summary.seconds.toFixed(1)} s (run ${summary.runId}); replaced files are in _retired/ until mlcap gc.`,
      )
    }
    this.noteWarnings(summary.warnings)
    return summary
  }
}
