import chalk from 'chalk'

import {LakeCommand} from '../cli/lakeCommand.js'
import {formatBytes, renderTable} from '../cli/table.js'
import {lakeStatus, LakeStatus} from '../lake/status.js'

export default class Status extends LakeCommand<typeof Status> {
  static override summary = 'Show what is in the lake and what is pending.'

  static override description =
    'Rows, files and bytes per table, objects in the store, the last commits, rejects by reason, work waiting for each stage, runs in progress, and runs whose process is gone (shown as interrupted).'

  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --lake /data/lake --json']

  async run(): Promise<LakeStatus> {
    const status = await lakeStatus(this.layout)
    if (this.jsonEnabled()) return status
    this.log(`${chalk.bold('Lake')} ${status.lake}  (commit ${status.commitId})`)
    this.log('')
    this.log(
      renderTable(
        ['table', 'rows', 'files', 'size'],
        status.tables.map((t) => ({table: t.table, rows: t.rows, files: t.files, size: formatBytes(t.bytes)})),
      ),
    )
    this.log(`\nobjects: ${status.objects.count} (${formatBytes(status.objects.bytes)})`)
    if (status.pending.length > 0) {
      this.log(`\n${chalk.bold('Pending')}`)
      for (const p of status.pending) this.log(`  ${p.stage.padEnd(8)} ${String(p.items).padStart(8)}  ${p.description}`)
    }
    if (status.rejects.length > 0) {
      this.log(`\n${chalk.bold('Rejects')}`)
      for (const r of status.rejects) this.log(`  ${r.stage.padEnd(8)} ${String(r.count).padStart(8)}  ${r.reason}`)
    }
    if (status.lastCommits.length > 0) {
      this.log(`\n${chalk.bold('Last commits')}`)
      for (const c of status.lastCommits) {
        const added = Object.entries(c.added)
          .filter(([, n]) => n > 0)
          .map(([t, n]) => `${t} +${n}`)
          .join(', ')
        this.log(`  ${String(c.commitId).padStart(5)}  ${c.committedAt}  ${c.operation.padEnd(8)} ${added}`)
      }
    }
    if (status.running.length > 0) {
      this.log(`\n${chalk.bold('Running')}`)
      for (const r of status.running) this.log(`  ${r.runId} (pid ${r.pid}) since ${r.startedAt}`)
    }
    if (status.interrupted.length > 0) {
      // Still 'running' in lake.runs: the next run of any stage records them as interrupted.
      this.log(`\n${chalk.bold('Interrupted')} (process gone)`)
      for (const r of status.interrupted) this.log(`  ${r.runId} (pid ${r.pid}) since ${r.startedAt}`)
    }
    return status
  }
}
