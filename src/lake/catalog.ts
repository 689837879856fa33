import {DuckDBConnection, DuckDBInstance, quotedIdentifier} from '@duckdb/node-api'
import {existsSync, linkSync, mkdirSync, renameSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {LakeBusyError, MlcapError} from './errors.js'
import {LakeLayout} from './layout.js'
import {StagedBatch} from './staging.js'

/**
 * The catalog is a DuckDB file. DuckDB lets one process at a time open a database file
 * (even read-only openers conflict with a writer), so nobody keeps it open: every use is
 * open → work → close, and opening retries with backoff while another process holds it.
 */
export const LAKE_FORMAT_VERSION = 1

const CATALOG_DDL = [
  `CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)`,
  `CREATE TABLE IF NOT EXISTS commits (
     commit_id BIGINT PRIMARY KEY, committed_at TIMESTAMPTZ, operation VARCHAR,
     run_id VARCHAR, summary JSON)`,
  `CREATE TABLE IF NOT EXISTS files (
     path VARCHAR PRIMARY KEY, table_name VARCHAR, added_commit BIGINT, removed_commit BIGINT,
     row_count BIGINT, bytes BIGINT, staged_path VARCHAR)`,
  `CREATE TABLE IF NOT EXISTS runs (
     run_id VARCHAR PRIMARY KEY, stage VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ,
     status VARCHAR, params JSON, rows_in BIGINT, rows_out BIGINT, rejects JSON, error VARCHAR,
     commits BIGINT[], pid INTEGER, host VARCHAR)`,
  // Keys of every committed row, per table: the anti-join that makes commits exactly-once.
  `CREATE TABLE IF NOT EXISTS keys (table_name VARCHAR, key VARCHAR, commit_id BIGINT)`,
]

export interface CatalogOptions {
  /** Give up waiting for another process after this many milliseconds (MLCAP_LOCK_TIMEOUT_MS). */
  lockTimeoutMs?: number
}

function lockTimeout(options: CatalogOptions): number {
  if (options.lockTimeoutMs !== undefined) return options.lockTimeoutMs
  const env = Number(process.env.MLCAP_LOCK_TIMEOUT_MS)
  return Number.isFinite(env) && env > 0 ? env : 60_000
}

export function isLockConflict(error: unknown): boolean {
  return error instanceof Error && /Could not set lock on file|Conflicting lock is held/i.test(error.message)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs `attempt` until it stops failing with DuckDB's lock conflict, with jittered
 * exponential backoff, or throws LakeBusyError once the lock timeout has passed.
 */
export async function retryOnLock<T>(what: string, attempt: () => Promise<T>, options: CatalogOptions = {}): Promise<T> {
  const timeout = lockTimeout(options)
  const deadline = Date.now() + timeout
  let delay = 5
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      if (!isLockConflict(error)) throw error
      if (Date.now() >= deadline) {
        const holder = /PID (\d+)/.exec((error as Error).message)?.[1]
        throw new LakeBusyError(
          `lake: ${what} stayed locked by another process${holder ? ` (PID ${holder})` : ''} for ${timeout} ms`,
          'Another mlcap command is committing or holding the catalog. Retry in a moment, or raise MLCAP_LOCK_TIMEOUT_MS.',
        )
      }
      await sleep(delay + Math.random() * delay)
      delay = Math.min(delay * 2, 250)
    }
  }
}

/**
 * DuckDB's lock on a database file is a POSIX record lock, and those belong to the process:
 * a second DuckDB instance in the same process opens the catalog while the first holds it,
 * and closing (or DETACHing) either one drops the process's lock while the other is still
 * writing. Another process can then open the catalog too, and two writers corrupt it (seen
 * with `watch`, whose batches, compactions and stages run side by side: "WAL cannot contain
 * more than one checkpoint marker", then every command failed). So within a process, uses of
 * one catalog file take turns: `work` runs once every earlier use of `file` has finished.
 */
const catalogTurns = new Map<string, Promise<void>>()

export async function oneAtATimeInProcess<T>(file: string, work: () => Promise<T>): Promise<T> {
  const previous = catalogTurns.get(file) ?? Promise.resolve()
  let done!: () => void
  const turn = previous.then(() => new Promise<void>((resolve) => (done = resolve)))
  catalogTurns.set(file, turn)
  await previous
  try {
    return await work()
  } finally {
    done()
    if (catalogTurns.get(file) === turn) catalogTurns.delete(file)
  }
}

/** Opens a DuckDB database file, waiting while another process holds its lock. */
export function openWithRetry(file: string, options: CatalogOptions = {}): Promise<DuckDBInstance> {
  return retryOnLock(`the catalog ${file}`, () => DuckDBInstance.create(file), options)
}

/** Throws LAKE_NOT_FOUND, with how to create or point at a lake, unless `layout` has a catalog. */
export function assertLakeExists(layout: LakeLayout): void {
  if (!existsSync(layout.catalogPath)) {
    throw new MlcapError('LAKE_NOT_FOUND', `lake: no lake at ${layout.root} (no catalog.duckdb there)`, {
      hint: 'Create one with `mlcap ingest <folder>`, or point at an existing lake with --lake DIR or MLCAP_LAKE.',
    })
  }
}

/** Runs `work` with the catalog open, then closes it whatever happens. */
export async function withCatalog<T>(
  layout: LakeLayout,
  work: (connection: DuckDBConnection) => Promise<T>,
  options: CatalogOptions = {},
): Promise<T> {
  assertLakeExists(layout)
  return oneAtATimeInProcess(layout.catalogPath, async () => {
    const instance = await openWithRetry(layout.catalogPath, options)
    let connection: DuckDBConnection | undefined
    try {
      connection = await instance.connect()
      await checkCatalogFormat(connection, layout)
      return await work(connection)
    } finally {
      connection?.closeSync()
      instance.closeSync()
    }
  })
}

/** Creates the lake folder and catalog if missing; refuses catalogs written by a newer mlcap. */
export async function ensureCatalog(layout: LakeLayout, options: CatalogOptions = {}): Promise<void> {
  mkdirSync(layout.root, {recursive: true})
  if (!existsSync(layout.catalogPath)) await createCatalog(layout)
  await oneAtATimeInProcess(layout.catalogPath, () => upgradeCatalog(layout, options))
  mkdirSync(layout.objectsDir, {recursive: true})
  mkdirSync(layout.stagingDir, {recursive: true})
}

async function upgradeCatalog(layout: LakeLayout, options: CatalogOptions): Promise<void> {
  const instance = await openWithRetry(layout.catalogPath, options)
  const connection = await instance.connect()
  try {
    // Refuse a newer lake before touching it (not even CREATE TABLE IF NOT EXISTS).
    await checkCatalogFormat(connection, layout)
    await connection.run('BEGIN TRANSACTION')
    for (const ddl of CATALOG_DDL) await connection.run(ddl)
    const rows = (await connection.runAndReadAll(`SELECT value FROM meta WHERE key = 'format_version'`)).getRows()
    if (rows.length === 0) await insertMeta(connection)
    await connection.run('COMMIT') // a newer lake was refused above, by checkCatalogFormat
  } catch (error) {
    await connection.run('ROLLBACK').catch(() => undefined)
    throw error
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
}

/**
 * Throws LAKE_TOO_NEW when the catalog (`database` = its name in this connection, e.g. an
 * ATTACH alias) was written by a newer mlcap. A catalog without meta yet (being created) passes.
 */
export async function checkCatalogFormat(connection: DuckDBConnection, layout: LakeLayout, database?: string): Promise<void> {
  const meta = database ? `${quotedIdentifier(database)}.meta` : 'meta'
  const hasMeta = (
    await connection.runAndReadAll(
      `SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta' AND schema_name = 'main' AND database_name = coalesce($db, current_database())`,
      {db: database ?? null},
    )
  ).getRows()
  if (Number(hasMeta[0][0]) === 0) return
  const rows = (await connection.runAndReadAll(`SELECT value FROM ${meta} WHERE key = 'format_version'`)).getRows()
  if (rows.length > 0) checkFormatVersion(Number(rows[0][0]), layout)
}

function insertMeta(connection: DuckDBConnection): Promise<unknown> {
  return connection.run(`INSERT INTO meta VALUES ('format_version', $v), ('created_at', $t), ('created_on', $h)`, {
    v: String(LAKE_FORMAT_VERSION),
    t: new Date().toISOString(),
    h: os.hostname(),
  })
}

/**
 * Builds a new catalog complete in a staging folder, then links it into place. DuckDB
 * creates a database file before it writes its header, so a process killed while creating
 * the lake in place could leave a catalog.duckdb that is empty or not a database at all,
 * which every later command would fail to open. Linking never replaces an existing file:
 * when two processes create the lake at once, the first one's catalog is the catalog.
 */
async function createCatalog(layout: LakeLayout): Promise<void> {
  const staging = new StagedBatch(layout) // owner.json lets gc remove it if we are killed
  try {
    const file = path.join(staging.dir, 'catalog.duckdb')
    const instance = await DuckDBInstance.create(file)
    const connection = await instance.connect()
    try {
      await connection.run('BEGIN TRANSACTION')
      for (const ddl of CATALOG_DDL) await connection.run(ddl)
      await insertMeta(connection)
      await connection.run('COMMIT')
      await connection.run('CHECKPOINT')
    } finally {
      connection.closeSync()
      instance.closeSync()
    }
    try {
      linkSync(file, layout.catalogPath)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EEXIST') return // another process created the lake first
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error
      if (!existsSync(layout.catalogPath)) renameSync(file, layout.catalogPath) // no hard links here
    }
  } finally {
    staging.discard()
  }
}

export function checkFormatVersion(found: number, layout: LakeLayout): void {
  if (!(found <= LAKE_FORMAT_VERSION)) {
    throw new MlcapError(
      'LAKE_TOO_NEW',
      `lake: ${layout.root} has format version ${found}, but this mlcap reads versions up to ${LAKE_FORMAT_VERSION}`,
      {hint: 'The lake was written by a newer mlcap. Upgrade mlcap (npm install -g mlcap@latest) to use it.'},
    )
  }
}
