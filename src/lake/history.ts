import {CatalogOptions} from './catalog.js'
import {LakeLayout} from './layout.js'
import {withLakeReader} from './reader.js'
import {abandonedRunError, runAbandoned, runOwner} from './runs.js'

export interface RunRecord {
  runId: string
  stage: string
  status: string
  startedAt: string
  endedAt: string | null
  seconds: number | null
  rowsIn: number | null
  rowsOut: number | null
  rejects: Record<string, number>
  params: Record<string, unknown>
  commits: number[]
  error: string | null
}

/**
 * Recorded runs, newest first. A run still recorded as running whose process is gone
 * (runAbandoned) is shown as interrupted, as the next writer will record it: a reader
 * never writes to the lake, so the catalog row stays as it is until then.
 */
export async function runHistory(
  layout: LakeLayout,
  options: CatalogOptions & {stage?: string; limit?: number} = {},
): Promise<RunRecord[]> {
  return withLakeReader(layout, async (reader) => {
    const rows = (
      await reader.connection.runAndReadAll(
        `SELECT run_id, stage, status, epoch_ms(started_at) AS started_ms, epoch_ms(ended_at) AS ended_ms,
                epoch_ms(ended_at) - epoch_ms(started_at) AS ms,
                rows_in, rows_out, rejects, params, commits, error, pid, host
           FROM lake.runs WHERE $stage IS NULL OR stage = $stage
          ORDER BY started_at DESC LIMIT $limit`,
        {stage: options.stage ?? null, limit: options.limit ?? 20},
      )
    ).getRowObjectsJson()
    return rows.map((r) => {
      const owner = runOwner(r.pid, r.host)
      const abandoned = r.status === 'running' && runAbandoned(owner)
      return {
        runId: String(r.run_id),
        stage: String(r.stage),
        status: abandoned ? 'interrupted' : String(r.status),
        startedAt: new Date(Number(r.started_ms)).toISOString(),
        endedAt: r.ended_ms === null ? null : new Date(Number(r.ended_ms)).toISOString(),
        seconds: r.ms === null ? null : Number(r.ms) / 1000,
        rowsIn: r.rows_in === null ? null : Number(r.rows_in),
        rowsOut: r.rows_out === null ? null : Number(r.rows_out),
        rejects: JSON.parse(String(r.rejects ?? '{}')) as Record<string, number>,
        params: JSON.parse(String(r.params ?? '{}')) as Record<string, unknown>,
        commits: ((r.commits as unknown[] | null) ?? []).map(Number),
        error: abandoned ? abandonedRunError(owner.pid) : r.error === null ? null : String(r.error),
      }
    })
  }, options)
}
