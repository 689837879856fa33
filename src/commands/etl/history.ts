import {Flags} from '@oclif/core'

import {LakeCommand} from '../../cli/lakeCommand.js'
import {renderTable} from '../../cli/table.js'
import {runHistory, RunRecord} from '../../lake/history.js'
import {RUN_STAGES} from '../../lake/runs.js'

export default class EtlHistory extends LakeCommand<typeof EtlHistory> {
  static override summary = 'Show recorded runs of every stage (lake.runs).'

  static override examples = [
    '<%= config.bin %> etl history',
    '<%= config.bin %> etl history --stage gold --limit 5 --json',
  ]

  static override flags = {
    // Every stage that records runs: a mistyped name is a usage error, not an empty table.
    stage: Flags.string({description: 'Only runs of this stage.', options: [...RUN_STAGES]}),
    limit: Flags.integer({description: 'Newest runs to show.', default: 20, min: 1}),
  }

  async run(): Promise<{runs: RunRecord[]}> {
    const runs = await runHistory(this.layout, {stage: this.flags.stage, limit: this.flags.limit})
    if (!this.jsonEnabled()) {
      this.log(
        renderTable(
          ['run_id', 'stage', 'status', 'started', 'seconds', 'in', 'out', 'rejects', 'error'],
          runs.map((r) => ({
            run_id: r.runId,
            stage: r.stage,
            status: r.status,
            started: r.startedAt,
            seconds: r.seconds ?? '',
            in: r.rowsIn ?? '',
            out: r.rowsOut ?? '',
            rejects: Object.entries(r.rejects)
              .map(([k, v]) => `${k}:${v}`)
              .join(' '),
            error: r.error ?? '',
          })),
        ),
      )
    }
    return {runs}
  }
}
