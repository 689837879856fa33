import {DuckDBConnection, quotedString} from '@duckdb/node-api'
import {existsSync, statSync} from 'node:fs'

import {CatalogOptions, withCatalog} from './catalog.js'
import {newDataFile, nextCommitId, PARQUET_OPTIONS, promote, recordCommit, recordFile, retireFiles} from './commit.js'
import {syncDir, syncFile} from './durable.js'
import {invalidParameter, MlcapError} from './errors.js'
import {LakeLayout} from './layout.js'
import {beginRun, finishCommittedRun, finishRun, Run} from './runs.js'
import {allTables, getTable, TableDef} from './schema.js'
import {StagedBatch} from './staging.js'

/**
 * Compaction: streaming commits (watch) leave many small Parquet files, and DuckDB scans a
 * thousand tiny files an order of magnitude slower than one. Compaction rewrites a table's
 * small files into few large ones without changing a single row:
 *
 *   1. inside one catalog transaction: pick the table's live files with fewer than
 *      `targetRows` rows, COPY their rows (sorted by the table's sortBy, zstd) to staging,
 *      mark the old files removed by a new commit (operation 'compact') and add the new one;
 *   2. after it: promote the new file into the table folder and move the replaced files to
 *      `<lake>/_retired/…`, so tools that read the plain folder never see a row twice.
 *      `mlcap gc` deletes retired files once they are older than its --min-age.
 *
 * Keys (lake `keys`) and every row's `commit_id` are unchanged. A reader that took its
 * snapshot before the compaction and meets a moved file retries on a fresh snapshot
 * (`withLakeReader`, `QuerySession`). Killed at any point, the lake is at a commit: before
 * the transaction commits nothing happened; after it, readers and gc roll the new file
 * forward and the next compaction finishes moving the old ones.
 */
export const COMPACT_DEFAULTS = Object.freeze({
  /** Compact a table only when it has at least this many small files. */
  minFiles: 8,
  /** Files with fewer rows are "small"; compaction writes files of up to this many rows. */
  targetRows: 1_000_000,
})

export interface CompactOptions extends CatalogOptions {
  minFiles?: number
  targetRows?: number
  /** Record the commit under this run (the caller begins and finishes it); default: a run of its own. */
  run?: Run
}

export interface TableCompaction {
  table: string
  /** The compaction's commit, or null when the table had fewer than minFiles small files. */
  commitId: number | null
  /** Small files replaced, and the files written for them. */
  filesBefore: number
  filesAfter: number
  rows: number
  bytesBefore: number
  bytesAfter: number
}

export interface CompactSummary {
  runId: string
  tables: TableCompaction[]
  seconds: number
  /** Problems that did not undo the work (the end of the run could not be recorded); absent when none. */
  warnings?: string[]
}

interface LiveFile {
  /** The path as the catalog stores it (relative to the lake, or absolute in older lakes). */
  stored: string
  path: string
  staged: string | null
  rows: number
  bytes: number
}

function settingsOf(options: CompactOptions): {minFiles: number; targetRows: number} {
  const minFiles = options.minFiles ?? COMPACT_DEFAULTS.minFiles
  const targetRows = options.targetRows ?? COMPACT_DEFAULTS.targetRows
  if (!Number.isInteger(minFiles) || minFiles < 2) throw invalidParameter('compact minFiles', 'an integer of at least 2', minFiles)
  if (!Number.isInteger(targetRows) || targetRows < 1) throw invalidParameter('compact targetRows', 'a positive integer', targetRows)
  return {minFiles, targetRows}
}

function knownTable(tableId: string): TableDef {
  try {
    return getTable(tableId)
  } catch {
    throw new MlcapError(
      'COMPACT_UNKNOWN_TABLE',
      `compact: unknown table ${JSON.stringify(tableId)}; expected one of ${allTables()
        .map((t) => t.id)
        .join(', ')}`,
      {exitCode: 2, hint: 'Name a table as layer.table, e.g. --table bronze.sources, or leave --table out to compact every table.'},
    )
  }
}

/** Compacts every table (or the given ones) under one run. */
export async function compactLake(
  layout: LakeLayout,
  options: CompactOptions & {tables?: string[]} = {},
): Promise<CompactSummary> {
  const started = Date.now()
  const settings = settingsOf(options)
  const defs = options.tables && options.tables.length > 0 ? options.tables.map(knownTable) : allTables()
  const run = options.run ?? (await beginRun(layout, 'compact', {tables: defs.map((d) => d.id), ...settings}, options))
  const tables: TableCompaction[] = []
  try {
    for (const def of defs) tables.push(await compactTable(layout, def.id, {...options, run}))
  } catch (error) {
    if (!options.run) await finishRun(layout, run, {status: 'failed', error: (error as Error).message}, options).catch(() => undefined)
    throw error
  }
  let warning: string | undefined
  if (!options.run) {
    const rowsIn = tables.reduce((n, t) => n + t.filesBefore, 0)
    const rowsOut = tables.reduce((n, t) => n + t.filesAfter, 0)
    warning = await finishCommittedRun(layout, run, {status: 'succeeded', rowsIn, rowsOut}, options)
  }
  return {runId: run.runId, tables, seconds: (Date.now() - started) / 1000, ...(warning ? {warnings: [warning]} : {})}
}

/**
 * Rewrites the table's small files into files of up to `targetRows` rows, in one commit,
 * when it has at least `minFiles` of them. Rows, keys and commit ids are unchanged.
 */
export async function compactTable(layout: LakeLayout, tableId: string, options: CompactOptions = {}): Promise<TableCompaction> {
  const def = knownTable(tableId)
  const {minFiles, targetRows} = settingsOf(options)
  const ownRun = options.run === undefined
  const run = options.run ?? (await beginRun(layout, 'compact', {tables: [def.id], minFiles, targetRows}, options))
  const outcome: TableCompaction = {table: def.id, commitId: null, filesBefore: 0, filesAfter: 0, rows: 0, bytesBefore: 0, bytesAfter: 0}
  const staging = new StagedBatch(layout)
  const promotions: Array<{staged: string; final: string}> = []
  const retire: string[] = []
  try {
    await withCatalog(
      layout,
      async (connection) => {
        // Finish moving files an earlier compaction replaced, if it was killed before that.
        for (const [file] of (
          await connection.runAndReadAll(`SELECT path FROM files WHERE table_name = $t AND removed_commit IS NOT NULL`, {t: def.id})
        ).getRows()) {
          const absolute = layout.fromCatalogPath(String(file))
          if (existsSync(absolute)) retire.push(absolute)
        }
        await connection.run('BEGIN TRANSACTION')
        try {
          const small = await smallFiles(connection, layout, def, targetRows)
          if (small.length < minFiles) {
            await connection.run('ROLLBACK')
            return
          }
          const commitId = await nextCommitId(connection)
          for (const group of groupFiles(small, targetRows)) {
            if (group.length < 2) continue
            const written = await rewriteGroup(connection, layout, def, group, commitId, staging)
            for (const f of group) {
              await connection.run(`UPDATE files SET removed_commit = $c WHERE path = $p AND removed_commit IS NULL`, {c: commitId, p: f.stored})
              retire.push(f.path)
            }
            await recordFile(connection, layout, written, def.id, commitId, written.rows)
            promotions.push({staged: written.staged, final: written.final})
            outcome.filesBefore += group.length
            outcome.filesAfter++
            outcome.rows += written.rows
            outcome.bytesBefore += group.reduce((n, f) => n + f.bytes, 0)
            outcome.bytesAfter += written.bytes
          }
          if (promotions.length === 0) {
            await connection.run('ROLLBACK')
            return
          }
          syncDir(staging.dir)
          await recordCommit(connection, commitId, 'compact', run.runId, {table: def.id, files_before: outcome.filesBefore, files_after: outcome.filesAfter, rows: outcome.rows, added: {}})
          await connection.run('COMMIT')
          outcome.commitId = commitId
        } catch (error) {
          await connection.run('ROLLBACK').catch(() => undefined)
          throw error
        }
      },
      options,
    )
    for (const p of promotions) promote(p.staged, p.final)
    retireFiles(layout, retire)
    if (ownRun) await finishRun(layout, run, {status: 'succeeded', rowsIn: outcome.filesBefore, rowsOut: outcome.filesAfter}, options)
    return outcome
  } catch (error) {
    if (ownRun) await finishRun(layout, run, {status: 'failed', error: (error as Error).message}, options).catch(() => undefined)
    throw error
  } finally {
    staging.discard()
  }
}

/** A live data file compaction would merge (bind `$target` to the target rows per file). */
export const SMALL_LIVE_FILE = 'removed_commit IS NULL AND row_count < $target'

async function smallFiles(connection: DuckDBConnection, layout: LakeLayout, def: TableDef, targetRows: number): Promise<LiveFile[]> {
  const rows = (
    await connection.runAndReadAll(
      `SELECT path, staged_path, row_count, bytes FROM files
       WHERE table_name = $t AND ${SMALL_LIVE_FILE}
       ORDER BY added_commit, path`,
      {t: def.id, target: targetRows},
    )
  ).getRows()
  return rows.map(([p, staged, n, bytes]) => ({
    stored: String(p),
    path: layout.fromCatalogPath(String(p)),
    staged: staged === null ? null : layout.fromCatalogPath(String(staged)),
    rows: Number(n),
    bytes: Number(bytes),
  }))
}

/** Consecutive files (oldest first) packed into groups of at most `targetRows` rows. */
export function groupFiles<T extends {rows: number}>(files: T[], targetRows: number): T[][] {
  const groups: T[][] = []
  let current: T[] = []
  let rows = 0
  for (const f of files) {
    if (current.length > 0 && rows + f.rows > targetRows) {
      groups.push(current)
      current = []
      rows = 0
    }
    current.push(f)
    rows += f.rows
  }
  if (current.length > 0) groups.push(current)
  return groups
}

async function rewriteGroup(
  connection: DuckDBConnection,
  layout: LakeLayout,
  def: TableDef,
  group: LiveFile[],
  commitId: number,
  staging: StagedBatch,
): Promise<{staged: string; final: string; rows: number; bytes: number}> {
  for (const f of group) {
    if (existsSync(f.path)) continue
    // Committed but not yet moved into place (its writer was killed): finish that first.
    if (f.staged && existsSync(f.staged)) promote(f.staged, f.path)
    else {
      throw new MlcapError('LAKE_CORRUPT', `compact: data file ${f.path} of ${def.id} is committed in the catalog but missing on disk`, {
        hint: 'Something outside mlcap removed it. Restore it from a backup; nothing was compacted.',
      })
    }
  }
  const {staged, final} = newDataFile(layout, staging.dir, def.id, commitId)
  const list = `[${group.map((f) => quotedString(f.path)).join(', ')}]`
  await connection.run(
    `COPY (SELECT * FROM read_parquet(${list}, union_by_name = true) ORDER BY ${def.sortBy}) TO ${quotedString(staged)} (${PARQUET_OPTIONS})`,
  )
  syncFile(staged)
  const rows = Number((await connection.runAndReadAll(`SELECT count(*) FROM read_parquet(${quotedString(staged)})`)).getRows()[0][0])
  const expected = group.reduce((n, f) => n + f.rows, 0)
  if (rows !== expected) {
    throw new MlcapError('COMPACT_ROW_MISMATCH', `compact: rewriting ${group.length} files of ${def.id} gave ${rows} rows, expected ${expected} (the catalog's row counts)`, {
      hint: 'Nothing was changed. Run `mlcap gc --dry-run` and check the table with `mlcap query`; report this as a bug.',
    })
  }
  return {staged, final, rows, bytes: statSync(staged).size}
}

