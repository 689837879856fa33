import {CatalogOptions} from './catalog.js'
import {commitBatch} from './commit.js'
import {LakeLayout} from './layout.js'
import {beginRun, finishCommittedRun, finishRun, Run, RunStage} from './runs.js'
import {StagedBatch} from './staging.js'

/** What every ETL stage run reports (and `etl run --json` prints). */
export interface StageSummary {
  stage: string
  runId: string
  status: 'succeeded' | 'interrupted' | 'nothing_to_do'
  /** Items the stage looked at (images, captions, pairs). */
  rowsIn: number
  /** Rows it added, per table. */
  added: Record<string, number>
  rejects: Record<string, number>
  commits: number[]
  seconds: number
  params: Record<string, unknown>
  /** Problems that did not undo the work (the end of the run could not be recorded); absent when none. */
  warnings?: string[]
}

export interface StageOptions extends CatalogOptions {
  signal?: AbortSignal
  onProgress?: (done: number, total: number) => void
  /** Rows per commit; a killed run loses at most one batch of work. */
  batchSize?: number
}

/**
 * The bookkeeping every stage shares: one run record, batches committed as they fill, and a
 * summary at the end. A `--full` rebuild is one commit that replaces its tables at the end
 * of the run (rows staged on disk meanwhile), so readers switch from the old rows to the new
 * ones at once and a rebuild that is killed or interrupted leaves the old tables as they were.
 */
export class StageRun {
  batch: StagedBatch
  readonly commits: number[] = []
  readonly added: Record<string, number> = {}
  readonly rejects: Record<string, number> = {}
  private replaceTables: readonly string[]
  /** Passed to every commit of this run (CommitOptions.unchangedSince). */
  unchangedSince?: {commitId: number; tables: readonly string[]}

  private constructor(
    readonly layout: LakeLayout,
    readonly run: Run,
    readonly options: StageOptions,
    replaceTables: readonly string[],
    readonly started = Date.now(),
  ) {
    this.batch = new StagedBatch(layout)
    this.replaceTables = replaceTables
  }

  static async begin(
    layout: LakeLayout,
    stage: RunStage,
    params: Record<string, unknown>,
    options: StageOptions,
    replaceTables: readonly string[] = [],
  ): Promise<StageRun> {
    const run = await beginRun(layout, stage, params, options)
    return new StageRun(layout, run, options, replaceTables)
  }

  get runId(): string {
    return this.run.runId
  }

  reject(reason: string): void {
    this.rejects[reason] = (this.rejects[reason] ?? 0) + 1
  }

  /** The batch is full and may be committed now (never in the middle of a --full rebuild). */
  get batchDue(): boolean {
    return this.replaceTables.length === 0 && this.batch.count() >= (this.options.batchSize ?? 1000)
  }

  /** Commits when the batch is full. */
  async maybeCommit(): Promise<void> {
    if (this.batchDue) await this.commit()
  }

  async commit(): Promise<void> {
    if (this.batch.count() === 0 && this.replaceTables.length === 0) return
    const result = await commitBatch(this.layout, this.batch, {
      operation: this.run.stage,
      runId: this.run.runId,
      replaceTables: this.replaceTables,
      unchangedSince: this.unchangedSince,
      lockTimeoutMs: this.options.lockTimeoutMs,
    })
    this.replaceTables = []
    if (result.commitId !== null) this.commits.push(result.commitId)
    for (const [table, n] of Object.entries(result.added)) this.added[table] = (this.added[table] ?? 0) + n
    this.batch = new StagedBatch(this.layout)
  }

  /** `rowsIn`: the items actually processed (fewer than planned when interrupted). */
  async finish(rowsIn: number): Promise<StageSummary> {
    const aborted = Boolean(this.options.signal?.aborted)
    // An interrupted rebuild is abandoned whole: committing it would replace the tables with part of them.
    if (!(aborted && this.replaceTables.length > 0)) await this.commit()
    this.batch.discard()
    // A rebuild that found nothing still replaced its tables (emptied them): that is not "nothing to do".
    const status = aborted ? 'interrupted' : rowsIn === 0 && this.commits.length === 0 ? 'nothing_to_do' : 'succeeded'
    const rowsOut = Object.values(this.added).reduce((a, b) => a + b, 0)
    const warning = await finishCommittedRun(
      this.layout,
      this.run,
      {status: status === 'interrupted' ? 'interrupted' : 'succeeded', rowsIn, rowsOut, rejects: this.rejects},
      this.options,
    )
    return {
      stage: this.run.stage,
      runId: this.run.runId,
      status,
      rowsIn,
      added: this.added,
      rejects: this.rejects,
      commits: this.commits,
      seconds: (Date.now() - this.started) / 1000,
      params: this.run.params,
      ...(warning ? {warnings: [warning]} : {}),
    }
  }

  async fail(error: unknown): Promise<never> {
    this.batch.discard()
    await finishRun(this.layout, this.run, {status: 'failed', error: (error as Error).message}, this.options).catch(
      () => undefined,
    )
    throw error
  }
}

/**
 * Runs `work` over `items` with at most `limit` in flight, stopping early when aborted.
 * When `flush.when()` says so, waits for everything in flight and runs `flush.run()` —
 * commits happen with nothing in flight, so a batch never holds half an item.
 */
export async function forEachLimited<T>(
  items: Iterable<T> | AsyncIterable<T>,
  limit: number,
  signal: AbortSignal | undefined,
  work: (item: T) => Promise<void>,
  flush?: {when: () => boolean; run: () => Promise<void>},
): Promise<void> {
  const inFlight = new Set<Promise<void>>()
  for await (const item of items) {
    if (signal?.aborted) break
    const task: Promise<void> = work(item).finally(() => inFlight.delete(task))
    inFlight.add(task)
    if (inFlight.size >= limit) await Promise.race(inFlight)
    if (flush?.when()) {
      await Promise.all(inFlight)
      await flush.run()
    }
  }
  await Promise.all(inFlight)
}
