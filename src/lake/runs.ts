import {DuckDBConnection} from '@duckdb/node-api'
import {randomBytes} from 'node:crypto'
import os from 'node:os'

import {CatalogOptions, withCatalog} from './catalog.js'
import {LakeBusyError} from './errors.js'
import {LakeLayout} from './layout.js'

/**
 * Every stage that records runs in lake.runs. Typed into beginRun, so a new writer of runs
 * must be added here, and `etl history --stage` accepts exactly these names.
 */
export const RUN_STAGES = ['ingest', 'watch', 'silver', 'caption', 'gold', 'compact'] as const
export type RunStage = (typeof RUN_STAGES)[number]

/** A run of a stage, recorded in lake.runs. */
export interface Run {
  readonly runId: string
  readonly stage: RunStage
  readonly startedAt: Date
  readonly params: Record<string, unknown>
}

export type RunStatus = 'succeeded' | 'failed' | 'interrupted'

export interface RunOutcome {
  status: RunStatus
  rowsIn?: number
  rowsOut?: number
  rejects?: Record<string, number>
  error?: string
}

export function newRunId(stage: RunStage): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..+/, '')
  return `${stage}-${stamp}-${randomBytes(3).toString('hex')}`
}

export async function beginRun(
  layout: LakeLayout,
  stage: RunStage,
  params: Record<string, unknown>,
  options: CatalogOptions = {},
): Promise<Run> {
  const run: Run = {runId: newRunId(stage), stage, startedAt: new Date(), params}
  await withCatalog(
    layout,
    async (connection) => {
      await markAbandonedRuns(connection)
      await connection.run(
        `INSERT INTO runs (run_id, stage, started_at, status, params, pid, host)
         VALUES ($id, $stage, $started, 'running', $params, $pid, $host)`,
        {
          id: run.runId,
          stage,
          started: run.startedAt.toISOString(),
          params: JSON.stringify(params),
          pid: process.pid,
          host: os.hostname(),
        },
      )
    },
    options,
  )
  return run
}

export async function finishRun(
  layout: LakeLayout,
  run: Run,
  outcome: RunOutcome,
  options: CatalogOptions = {},
): Promise<void> {
  await withCatalog(
    layout,
    (connection) =>
      connection.run(
        `UPDATE runs SET ended_at = now(), status = $status, rows_in = $rin, rows_out = $rout,
           rejects = $rejects, error = $error WHERE run_id = $id`,
        {
          id: run.runId,
          status: outcome.status,
          rin: outcome.rowsIn ?? null,
          rout: outcome.rowsOut ?? null,
          rejects: JSON.stringify(outcome.rejects ?? {}),
          error: outcome.error ?? null,
        },
      ),
    options,
  )
}

/**
 * Records the end of a run whose work is done and committed. Recording it can time out
 * waiting for the catalog (another process holding it past the lock timeout); that must not
 * turn the run into a failure (exit 3) when its data is committed: the commits stand, and the
 * run row stays 'running' until this process exits, then reads as interrupted (runAbandoned)
 * and the next writer records it so. Returns the warning to pass on then.
 */
export async function finishCommittedRun(
  layout: LakeLayout,
  run: Run,
  outcome: RunOutcome,
  options: CatalogOptions = {},
): Promise<string | undefined> {
  try {
    await finishRun(layout, run, outcome, options)
    return undefined
  } catch (error) {
    if (!(error instanceof LakeBusyError)) throw error
    return (
      `${run.stage}: the work is committed, but recording the end of run ${run.runId} in lake.runs failed (${error.message}). ` +
      'Nothing needs redoing: lake.runs shows the run as running until this process exits, then as interrupted, with its commits kept'
    )
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Whether a run the catalog records as 'running' was abandoned: started on this host by a
 * process that no longer exists (killed or crashed). A run of another host cannot be checked
 * from here and counts as running. The one rule for writers (which record such runs as
 * interrupted) and readers (which only show them so, never writing to the lake).
 */
export function runAbandoned(run: {pid: number | null; host: string | null}): boolean {
  return run.host === os.hostname() && (run.pid === null || !processAlive(run.pid))
}

/** A run's owner as lake.runs holds it (`pid`, `host` columns, either may be NULL), for runAbandoned. */
export function runOwner(pid: unknown, host: unknown): {pid: number | null; host: string | null} {
  return {pid: pid === null || pid === undefined ? null : Number(pid), host: host === null || host === undefined ? null : String(host)}
}

/** The error an abandoned run is recorded (and shown) with. */
export function abandonedRunError(pid: number | null): string {
  return `process ${pid ?? 'unknown'} ended without finishing the run (killed or crashed); committed batches were kept`
}

/**
 * Records runs abandoned by their process (runAbandoned) as interrupted, so history tells
 * the truth. (Their committed batches stay; their uncommitted work is staging debris for gc.)
 */
export async function markAbandonedRuns(connection: DuckDBConnection): Promise<number> {
  const rows = (await connection.runAndReadAll(`SELECT run_id, pid, host FROM runs WHERE status = 'running'`)).getRows()
  let marked = 0
  for (const [runId, pid, host] of rows) {
    const run = runOwner(pid, host)
    if (!runAbandoned(run)) continue
    await connection.run(`UPDATE runs SET status = 'interrupted', ended_at = now(), error = $error WHERE run_id = $id`, {
      id: String(runId),
      error: abandonedRunError(run.pid),
    })
    marked++
  }
  return marked
}
