import {DuckDBConnection, listValue, quotedIdentifier, quotedString} from '@duckdb/node-api'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, renameSync, statSync, utimesSync} from 'node:fs'
import path from 'node:path'

import {CatalogOptions, withCatalog} from './catalog.js'
import {syncDir, syncFile} from './durable.js'
import {MlcapError} from './errors.js'
import {LakeLayout} from './layout.js'
import {getTable, stagedColumns, TableDef} from './schema.js'
import {StagedBatch} from './staging.js'

export interface CommitOptions extends CatalogOptions {
  operation: string
  runId: string
  /** Small JSON-able summary stored with the commit (counts, parameters). */
  summary?: Record<string, unknown>
  /**
   * Tables rebuilt from scratch (`etl run --full`): their current files and keys are
   * retired in the same transaction, so readers switch from the old rows to the new ones
   * at once. Retired files move to `_retired/` (gc deletes them later).
   */
  replaceTables?: readonly string[]
  /**
   * Commit only if no other run committed to these tables after `commitId` (the snapshot
   * the caller decided from); otherwise nothing is committed and LAKE_CONFLICT is thrown.
   * For stages whose rows depend on what their own tables already hold (gold's groups and
   * splits): the key anti-join keeps rows unique, but cannot tell that a row was decided
   * against a state of the table another writer has changed since. And for rebuilds
   * (`replaceTables`), which would otherwise retire rows committed after their snapshot.
   * Compactions do not count (they change files, not rows).
   */
  unchangedSince?: {commitId: number; tables: readonly string[]}
}

/** What a refused commit ran into: another run's commit to `tables` after the snapshot `since`. */
export interface CommitConflict {
  since: number
  tables: readonly string[]
  /** The first such commit, and its run. */
  commitId: number
  runId: string
}

/** A commit refused because another run changed the tables it was decided from (see CommitOptions.unchangedSince). */
export class CommitConflictError extends MlcapError {
  constructor(
    readonly conflict: CommitConflict,
    message = `lake: ${conflict.tables.join(', ')} changed after commit ${conflict.since} (commit ${conflict.commitId} of run ${conflict.runId}), which this run decided from; nothing was committed`,
    hint = 'Another process committed the same stage meanwhile. Run the command again; it starts from the new state.',
  ) {
    super('LAKE_CONFLICT', message, {hint})
    this.name = 'CommitConflictError'
  }
}

export interface CommitResult {
  /** null when every staged row was already in the lake: nothing new, nothing committed. */
  commitId: number | null
  /** Rows actually added per table (staged rows minus keys the table already had). */
  added: Record<string, number>
  staged: Record<string, number>
}

export const PARQUET_OPTIONS = `FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880`

function jsonColumns(def: TableDef): string {
  const fields = stagedColumns(def).map((c) => `${quotedString(c.name)}: ${quotedString(c.type)}`)
  return `{${fields.join(', ')}}`
}

function selectList(def: TableDef, commitId: number): string {
  return def.columns
    .map((c) => (c.name === 'commit_id' ? `CAST(${commitId} AS BIGINT) AS commit_id` : quotedIdentifier(c.name)))
    .join(', ')
}

/**
 * The one way data enters a table. Inside a single catalog transaction:
 *   1. read the staged rows, drop those whose key the table already has (and duplicates
 *      within the batch) — so concurrent writers of the same work add it exactly once,
 *      because only one process can hold the catalog at a time;
 *   2. write the remaining rows to a Parquet file in the staging folder, and force it to
 *      disk (durable.ts: a power cut must not leave the commit naming an empty file);
 *   3. record the file, its keys and the commit.
 * After the transaction commits, the staged files are renamed into their table folders.
 * A process killed before the commit leaves only staging debris (gc removes it); killed
 * after it, the next reader finishes the renames and moves out the files the commit retired
 * (reader.ts: ensurePresent, finishRetirements). Either way the lake
 * is at a commit, never in between.
 */
export async function commitBatch(layout: LakeLayout, batch: StagedBatch, options: CommitOptions): Promise<CommitResult> {
  batch.flush()
  const staged: Record<string, number> = {}
  for (const t of batch.tables()) staged[t] = batch.count(t)
  const promotions: Array<{staged: string; final: string}> = []
  const added: Record<string, number> = {}
  const retired: string[] = []

  const commitId = await withCatalog(
    layout,
    async (connection) => {
      await connection.run('BEGIN TRANSACTION')
      try {
        if (options.unchangedSince) await assertUnchangedSince(connection, options.unchangedSince, options.runId)
        const id = await nextCommitId(connection)
        let changed = false
        for (const tableId of options.replaceTables ?? []) {
          const rows = (
            await connection.runAndReadAll(
              `UPDATE files SET removed_commit = $c WHERE table_name = $t AND removed_commit IS NULL RETURNING path`,
              {c: id, t: tableId},
            )
          ).getRows()
          for (const [file] of rows) retired.push(layout.fromCatalogPath(String(file)))
          await connection.run(`DELETE FROM keys WHERE table_name = $t`, {t: tableId})
          changed = true
        }
        for (const tableId of batch.tables()) {
          const n = await stageTable(connection, layout, batch, getTable(tableId), id, promotions)
          added[tableId] = n
          if (n > 0) changed = true
        }
        if (!changed) {
          await connection.run('ROLLBACK')
          return null
        }
        if (promotions.length > 0) syncDir(batch.dir) // the staged files' names, before the commit that needs them (durable.ts)
        await recordCommit(connection, id, options.operation, options.runId, {...options.summary, added})
        await connection.run('COMMIT')
        return id
      } catch (error) {
        await connection.run('ROLLBACK').catch(() => undefined)
        throw error
      }
    },
    options,
  )

  for (const p of promotions) promote(p.staged, p.final)
  retireFiles(layout, retired)
  batch.discard()
  return {commitId, added, staged}
}

/** Inside the committing transaction: throws CommitConflictError if another run committed to `tables` after `commitId`. */
async function assertUnchangedSince(connection: DuckDBConnection, since: {commitId: number; tables: readonly string[]}, runId: string): Promise<void> {
  const rows = (
    await connection.runAndReadAll(
      `SELECT c.commit_id, c.run_id FROM commits c
        WHERE c.commit_id > $since AND c.run_id IS DISTINCT FROM $run AND c.operation <> 'compact'
          AND EXISTS (SELECT 1 FROM files f WHERE list_contains($tables, f.table_name)
                        AND (f.added_commit = c.commit_id OR f.removed_commit = c.commit_id))
        ORDER BY c.commit_id LIMIT 1`,
      {since: since.commitId, run: runId, tables: listValue([...since.tables])},
    )
  ).getRows()
  if (rows.length > 0) {
    const [commitId, other] = rows[0]
    throw new CommitConflictError({since: since.commitId, tables: since.tables, commitId: Number(commitId), runId: String(other)})
  }
}

/** The id the next commit takes (inside the committing transaction). */
export async function nextCommitId(connection: DuckDBConnection): Promise<number> {
  const rows = (await connection.runAndReadAll('SELECT coalesce(max(commit_id), 0) + 1 FROM commits')).getRows()
  return Number(rows[0][0])
}

/** Inside the committing transaction: the `commits` row, and the commit appended to its run's list. */
export async function recordCommit(connection: DuckDBConnection, id: number, operation: string, runId: string, summary: Record<string, unknown>): Promise<void> {
  await connection.run(`INSERT INTO commits VALUES ($id, now(), $op, $run, $summary)`, {id, op: operation, run: runId, summary: JSON.stringify(summary)})
  await connection.run(`UPDATE runs SET commits = list_append(coalesce(commits, []), $id) WHERE run_id = $run`, {id, run: runId})
}

async function stageTable(
  connection: DuckDBConnection,
  layout: LakeLayout,
  batch: StagedBatch,
  def: TableDef,
  commitId: number,
  promotions: Array<{staged: string; final: string}>,
): Promise<number> {
  const rowsFile = batch.rowsFile(def.id)
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE incoming AS
       SELECT *, row_number() OVER () AS __ord FROM read_json(${quotedString(rowsFile)},
         format = 'newline_delimited', columns = ${jsonColumns(def)}, maximum_object_size = 268435456)`,
  )
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE fresh AS
       SELECT i.* FROM (SELECT *, CAST((${def.key}) AS VARCHAR) AS __key FROM incoming) i
       ANTI JOIN (SELECT key FROM keys WHERE table_name = $t) k ON i.__key = k.key
       QUALIFY row_number() OVER (PARTITION BY i.__key ORDER BY i.__ord) = 1`,
    {t: def.id},
  )
  const count = Number((await connection.runAndReadAll('SELECT count(*) FROM fresh')).getRows()[0][0])
  if (count > 0) {
    const file = newDataFile(layout, batch.dir, def.id, commitId)
    await connection.run(
      `COPY (SELECT ${selectList(def, commitId)} FROM fresh ORDER BY ${def.sortBy}) TO ${quotedString(file.staged)} (${PARQUET_OPTIONS})`,
    )
    syncFile(file.staged)
    await connection.run(`INSERT INTO keys SELECT $t, __key, $c FROM fresh`, {t: def.id, c: commitId})
    await recordFile(connection, layout, file, def.id, commitId, count)
    promotions.push(file)
  }
  await connection.run('DROP TABLE incoming')
  await connection.run('DROP TABLE fresh')
  return count
}

/** Where a new data file of `tableId` is written (in `stagingDir`) and where it goes once committed (its table folder). */
export function newDataFile(layout: LakeLayout, stagingDir: string, tableId: string, commitId: number): {staged: string; final: string} {
  const name = `part-${String(commitId).padStart(8, '0')}-${randomBytes(4).toString('hex')}.parquet`
  return {staged: path.join(stagingDir, `${tableId}.${name}`), final: path.join(layout.tableDir(tableId), name)}
}

/** Inside the committing transaction: the catalog row of a new data file, written to `file.staged` already. */
export async function recordFile(
  connection: DuckDBConnection,
  layout: LakeLayout,
  file: {staged: string; final: string},
  tableId: string,
  commitId: number,
  rows: number,
): Promise<void> {
  await connection.run(`INSERT INTO files VALUES ($path, $t, $c, NULL, $n, $bytes, $staged)`, {
    path: layout.toCatalogPath(file.final),
    t: tableId,
    c: commitId,
    n: rows,
    bytes: statSync(file.staged).size,
    staged: layout.toCatalogPath(file.staged),
  })
}

/** Moves a committed file from staging into its table folder; idempotent. */
export function promote(stagedPath: string, finalPath: string): boolean {
  if (existsSync(finalPath)) return false
  mkdirSync(path.dirname(finalPath), {recursive: true})
  try {
    renameSync(stagedPath, finalPath)
    return true
  } catch (error) {
    // Another process finished the same promotion first.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && existsSync(finalPath)) return false
    throw error
  }
}

/**
 * Moves files a commit retired out of their table folders, so that plain-folder readers
 * (`read_parquet('<lake>/silver/images/*.parquet')`) never see old and new rows together.
 * Readers holding an older snapshot retry with a fresh one; gc deletes `_retired/` later.
 */
export function retireFiles(layout: LakeLayout, files: readonly string[]): void {
  for (const file of files) {
    const target = path.join(layout.retiredDir, path.relative(layout.root, file))
    if (!existsSync(file)) continue
    mkdirSync(path.dirname(target), {recursive: true})
    try {
      renameSync(file, target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      continue
    }
    // Dated by its retirement, not its writing: gc keeps `_retired/` files for --min-age from now.
    const now = new Date()
    utimesSync(target, now, now)
  }
}
