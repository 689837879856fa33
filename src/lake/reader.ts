import {DuckDBConnection, DuckDBInstance, listValue, quotedIdentifier, quotedString} from '@duckdb/node-api'
import {existsSync, readdirSync} from 'node:fs'
import path from 'node:path'

import {assertLakeExists, CatalogOptions, checkCatalogFormat, oneAtATimeInProcess, retryOnLock} from './catalog.js'
import {MlcapError} from './errors.js'
import {LakeLayout} from './layout.js'
import {promote, retireFiles} from './commit.js'
import {allTables, getTable, TableDef} from './schema.js'

/** The committed state of the lake at one instant: the data files of every table. */
export interface LakeSnapshot {
  /** The newest commit (0 for an empty lake). */
  commitId: number
  files: Map<string, string[]>
}

/** Catalog tables copied into the reader as `lake.*` (small, read at open time). */
const CATALOG_TABLES = ['commits', 'runs', 'files'] as const

export interface ReaderOptions extends CatalogOptions {
  /** DuckDB threads for this reader (default: all cores). */
  threads?: number
  /**
   * The only tables to make views of (default: every table); of the catalog, only `lake.files`
   * is then copied (opening reads it), not `lake.commits` or `lake.runs`. Each view and copy is
   * a DuckDB statement (~0.5 ms): a caller that queries a few known tables (export) opens
   * faster. The snapshot is the same: the file list of every table is read and checked.
   */
  tables?: readonly string[]
}

/**
 * An in-memory DuckDB whose schemas `bronze`, `silver`, `gold` hold one view per table over
 * exactly the files of the latest commit, and `lake` holds copies of the catalog tables.
 * The catalog itself is held only while the file list is read (a few milliseconds), so
 * readers never block writers for long; the data files are immutable, so the view stays
 * consistent for as long as the reader lives.
 */
export class LakeReader {
  private constructor(
    readonly layout: LakeLayout,
    readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
    readonly snapshot: LakeSnapshot,
  ) {}

  static async open(layout: LakeLayout, options: ReaderOptions = {}): Promise<LakeReader> {
    assertLakeExists(layout)
    const instance = await DuckDBInstance.create(':memory:', options.threads ? {threads: String(options.threads)} : {})
    try {
      const connection = await instance.connect()
      try {
        const snapshot = await readCatalog(layout, connection, options)
        await createViews(connection, snapshot, options.tables)
        return new LakeReader(layout, instance, connection, snapshot)
      } catch (error) {
        connection.closeSync()
        throw error
      }
    } catch (error) {
      instance.closeSync()
      throw error
    }
  }

  private closed = false

  /** Closes the connection and the database (once: later calls do nothing). */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.connection.closeSync()
    this.instance.closeSync()
  }
}

async function readCatalog(layout: LakeLayout, connection: DuckDBConnection, options: ReaderOptions): Promise<LakeSnapshot> {
  // lake.files is kept in any case: finishRetirements reads it.
  const copied = options.tables === undefined ? CATALOG_TABLES : (['files'] as const)
  await connection.run('CREATE SCHEMA lake')
  // A compaction that commits between our read of the file list and the check below moves
  // files out of the table folders: read the list again rather than report corruption.
  for (let attempt = 1; ; attempt++) {
    // ATTACH … DETACH takes and drops the process's lock on the catalog: not while another
    // use in this process holds it (oneAtATimeInProcess).
    const {rows, commitId} = await oneAtATimeInProcess(layout.catalogPath, () => retryOnLock(
      `the catalog ${layout.catalogPath}`,
      async () => {
        await connection.run(`ATTACH ${quotedString(layout.catalogPath)} AS catalog`)
        try {
          await checkCatalogFormat(connection, layout, 'catalog')
          for (const t of copied) {
            await connection.run(`CREATE OR REPLACE TABLE lake.${t} AS SELECT * FROM catalog.${t}`)
          }
          // Users see absolute paths in lake.files; the catalog keeps them relative to the lake.
          const root = quotedString(layout.root + path.sep)
          await connection.run(
            `UPDATE lake.files SET path = CASE WHEN starts_with(path, '/') THEN path ELSE ${root} || path END,
               staged_path = CASE WHEN staged_path IS NULL OR starts_with(staged_path, '/') THEN staged_path ELSE ${root} || staged_path END`,
          )
          const rows = (
            await connection.runAndReadAll(
              `SELECT table_name, path, staged_path FROM catalog.files WHERE removed_commit IS NULL ORDER BY table_name, path`,
            )
          ).getRows()
          const last = (await connection.runAndReadAll('SELECT coalesce(max(commit_id), 0) FROM catalog.commits')).getRows()
          return {rows, commitId: Number(last[0][0])}
        } finally {
          await connection.run('DETACH catalog').catch(() => undefined)
        }
      },
      options,
    ))
    const files = new Map<string, string[]>()
    try {
      for (const [table, file, staged] of rows) {
        const absolute = layout.fromCatalogPath(String(file))
        ensurePresent(absolute, staged === null ? null : layout.fromCatalogPath(String(staged)))
        const list = files.get(String(table)) ?? []
        list.push(absolute)
        files.set(String(table), list)
      }
    } catch (error) {
      if (attempt < 3 && error instanceof MlcapError && error.code === 'LAKE_CORRUPT') continue
      throw error
    }
    await finishRetirements(layout, connection, files)
    return {commitId, files}
  }
}

/**
 * DuckDB's error when a view names a data file that is no longer there: a compaction
 * retired it after this reader took its snapshot. A fresh snapshot reads the new file.
 */
export function isMissingFileError(error: unknown): boolean {
  return error instanceof Error && /No files found that match the pattern|Cannot open file .*No such file or directory/i.test(error.message)
}

/**
 * Opens a reader, runs `work`, closes it; if `work` fails because a compaction moved a file
 * of the snapshot away meanwhile, runs it once more on a fresh snapshot.
 */
export async function withLakeReader<T>(
  layout: LakeLayout,
  work: (reader: LakeReader) => Promise<T>,
  options: ReaderOptions = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const reader = await LakeReader.open(layout, options)
    try {
      return await work(reader)
    } catch (error) {
      if (attempt >= 2 || !isMissingFileError(error)) throw error
    } finally {
      reader.close()
    }
  }
}

/**
 * Rolls an interrupted retirement forward: a process killed between the commit that retired
 * files (`etl run --full`, compaction) and moving them out leaves them in their table folder,
 * where plain-folder readers (Spark, `read_parquet('<lake>/silver/images/*.parquet')`) would
 * see old and new rows together. Lists the table folders and retires what is there besides
 * the live files, if the catalog (this reader's copy, `lake.files`) says it was retired.
 * Files the catalog does not know are left to gc.
 */
async function finishRetirements(layout: LakeLayout, connection: DuckDBConnection, live: Map<string, string[]>): Promise<void> {
  const strays: string[] = []
  for (const def of allTables()) {
    const dir = layout.tableDir(def.id)
    const known = new Set(live.get(def.id) ?? [])
    let names: string[]
    try {
      names = readdirSync(dir)
    } catch {
      continue // no folder: nothing committed to this table yet
    }
    for (const name of names) if (!known.has(path.join(dir, name))) strays.push(path.join(dir, name))
  }
  if (strays.length === 0) return
  const retired = (
    await connection.runAndReadAll(`SELECT path FROM lake.files WHERE removed_commit IS NOT NULL AND list_contains($strays, path)`, {
      strays: listValue(strays),
    })
  ).getRows()
  retireFiles(layout, retired.map(([file]) => String(file)))
}

/** Rolls a committed-but-not-yet-promoted file forward; a file gone from both places is corruption. */
function ensurePresent(file: string, staged: string | null): void {
  if (existsSync(file)) return
  if (staged && existsSync(staged)) {
    promote(staged, file)
    return
  }
  throw new MlcapError('LAKE_CORRUPT', `lake: data file ${file} is committed in the catalog but missing on disk`, {
    hint: 'Something outside mlcap removed it. Restore it from a backup, or run `mlcap gc` to see what else is missing.',
  })
}

async function createViews(connection: DuckDBConnection, snapshot: LakeSnapshot, only?: readonly string[]): Promise<void> {
  const tables = only === undefined ? allTables() : only.map((id) => getTable(id))
  const layers = new Set(tables.map((t) => t.id.split('.')[0]))
  for (const layer of layers) await connection.run(`CREATE SCHEMA IF NOT EXISTS ${quotedIdentifier(layer)}`)
  for (const def of tables) await connection.run(viewSql(def, snapshot.files.get(def.id) ?? []))
}

export function tableRef(tableId: string): string {
  const [layer, name] = tableId.split('.')
  return `${quotedIdentifier(layer)}.${quotedIdentifier(name)}`
}

function viewSql(def: TableDef, files: string[]): string {
  if (files.length === 0) {
    const cols = def.columns.map((c) => `${quotedIdentifier(c.name)} ${c.type}`).join(', ')
    return `CREATE TABLE ${tableRef(def.id)} (${cols})`
  }
  const list = files.map((f) => quotedString(f)).join(', ')
  return `CREATE VIEW ${tableRef(def.id)} AS SELECT * FROM read_parquet([${list}], union_by_name = true)`
}
