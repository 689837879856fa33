import {DuckDBConnection, quotedIdentifier, quotedString} from '@duckdb/node-api'
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {CatalogOptions, withCatalog} from './catalog.js'
import {promote} from './commit.js'
import {LakeLayout} from './layout.js'
import {processAlive} from './runs.js'
import {allTables} from './schema.js'

export interface GcOptions extends CatalogOptions {
  dryRun?: boolean
  /**
   * Unreferenced objects younger than this are kept: a running ingest writes objects
   * before the commit that references them. Files compaction retired (`_retired/`) are
   * kept as long, for readers of older snapshots. Default one hour.
   */
  minAgeMs?: number
}

export type GcKind = 'staging' | 'orphan_data_file' | 'retired_data_file' | 'unreferenced_object' | 'temporary_object'

export interface GcItem {
  path: string
  kind: GcKind
  bytes: number
}

export interface GcResult {
  dryRun: boolean
  removed: GcItem[]
  bytes: number
  /** Committed files whose rename into place had been interrupted, finished now. */
  rolledForward: number
}

/**
 * Removes what no commit references: staging folders of processes that died, data files
 * in table folders the catalog does not list (or lists as retired), and objects no table
 * refers to. It holds the catalog for the whole decision, so no commit can land between
 * "this file is unreferenced" and its removal.
 */
export async function collectGarbage(layout: LakeLayout, options: GcOptions = {}): Promise<GcResult> {
  const minAgeMs = options.minAgeMs ?? 3_600_000
  const dryRun = Boolean(options.dryRun)
  return withCatalog(
    layout,
    async (connection) => {
      const files = (await connection.runAndReadAll(`SELECT path, staged_path, removed_commit FROM files`)).getRows()
      let rolledForward = 0
      const live = new Set<string>()
      const retired = new Set<string>()
      for (const [stored, storedStaged, removed] of files) {
        const file = layout.fromCatalogPath(String(stored))
        const staged = storedStaged === null ? null : layout.fromCatalogPath(String(storedStaged))
        if (removed === null) {
          live.add(file)
          if (!existsSync(file) && staged !== null && existsSync(staged) && !dryRun) {
            if (promote(staged, file)) rolledForward++
          }
        } else retired.add(file)
      }
      const removed: GcItem[] = []
      removed.push(...deadStaging(layout))
      for (const def of allTables()) {
        const dir = layout.tableDir(def.id)
        for (const name of safeList(dir)) {
          const file = path.join(dir, name)
          if (live.has(file)) continue
          removed.push({path: file, kind: retired.has(file) ? 'retired_data_file' : 'orphan_data_file', bytes: sizeOf(file)})
        }
      }
      const now = Date.now()
      // Files a compaction replaced: kept a while for readers holding an older snapshot.
      for (const file of filesUnder(layout.retiredDir)) {
        const stat = statSync(file, {throwIfNoEntry: false})
        if (!stat || now - stat.mtimeMs < minAgeMs) continue
        removed.push({path: file, kind: 'retired_data_file', bytes: stat.size})
      }
      const referenced = await referencedObjects(connection, layout, live)
      const protectedFrom = await liveWritersSince(connection)
      const keep = (mtimeMs: number) => now - mtimeMs < minAgeMs || mtimeMs >= protectedFrom
      for (const shard of safeList(layout.objectsDir)) {
        const dir = path.join(layout.objectsDir, shard)
        for (const name of safeList(dir)) {
          const file = path.join(dir, name)
          if (!dryRun && restoreAside(dir, name)) continue // a gc killed mid-removal set it aside
          if (referenced.has(name)) continue
          const stat = statSync(file, {throwIfNoEntry: false})
          if (!stat || keep(stat.mtimeMs)) continue
          const temporary = name.startsWith('.tmp-') || name.startsWith(ASIDE_PREFIX)
          removed.push({path: file, kind: temporary ? 'temporary_object' : 'unreferenced_object', bytes: stat.size})
        }
      }
      if (dryRun) return {dryRun, removed, bytes: removed.reduce((sum, item) => sum + item.bytes, 0), rolledForward}
      const gone: GcItem[] = []
      for (const item of removed) {
        if (item.kind === 'unreferenced_object') {
          if (removeObject(item.path, keep)) gone.push(item)
          continue
        }
        rmSync(item.path, {recursive: true, force: true})
        gone.push(item)
      }
      return {dryRun, removed: gone, bytes: gone.reduce((sum, item) => sum + item.bytes, 0), rolledForward}
    },
    options,
  )
}

/** An object gc has set aside to remove: `.gc-<sha256>-<random>` beside it. */
const ASIDE_PREFIX = '.gc-'

/**
 * Removes an unreferenced object unless a writer stored it again after gc judged it. A writer
 * reusing an object that holds the right bytes only refreshes its age (putObject) and then
 * commits rows naming it, so judging the age and removing the file are two steps a writer can
 * fall between. The object is therefore renamed aside first (a writer coming later finds it
 * gone and writes it anew), its age is read again, and only then is it deleted — or put back
 * when a writer refreshed it in between. Returns whether it was removed.
 */
function removeObject(file: string, keep: (mtimeMs: number) => boolean): boolean {
  const aside = path.join(path.dirname(file), `${ASIDE_PREFIX}${path.basename(file)}-${randomBytes(4).toString('hex')}`)
  try {
    renameSync(file, aside)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
  const stat = statSync(aside)
  if (!keep(stat.mtimeMs)) {
    rmSync(aside, {force: true})
    return true
  }
  renameSync(aside, file) // a writer rewrote it meanwhile? Same name, same bytes: either copy will do
  return false
}

/** Puts back an object a gc killed between setting it aside and deciding; true if `name` was such a leftover. */
function restoreAside(dir: string, name: string): boolean {
  const match = /^\.gc-([0-9a-f]{64})-[0-9a-f]+$/.exec(name) // ASIDE_PREFIX + sha256 + random
  if (!match) return false
  const file = path.join(dir, match[1])
  if (existsSync(file)) return false // the object is there (written again): the copy aside is debris
  renameSync(path.join(dir, name), file)
  return true
}

/** Another host's run still marked running after this long is taken for dead (its pid cannot be checked from here). */
const FOREIGN_RUN_TRUST_MS = 24 * 3_600_000

/**
 * When the oldest run still writing (status running, its process alive) started, less a
 * minute of clock slack; Infinity when none is. A run writes objects before the commit that
 * references them, so gc keeps every object stored since then, whatever --min-age says.
 */
async function liveWritersSince(connection: DuckDBConnection): Promise<number> {
  const rows = (await connection.runAndReadAll(`SELECT epoch_ms(started_at), pid, host FROM runs WHERE status = 'running'`)).getRows()
  const now = Date.now()
  const starts = rows
    .filter(([started, pid, host]) => (host === os.hostname() ? processAlive(Number(pid)) : now - Number(started) < FOREIGN_RUN_TRUST_MS))
    .map(([started]) => Number(started))
  return starts.length === 0 ? Infinity : Math.min(...starts) - 60_000
}

/** Staging folders whose owning process is gone (or unknown). */
function deadStaging(layout: LakeLayout): GcItem[] {
  const items: GcItem[] = []
  for (const name of safeList(layout.stagingDir)) {
    const dir = path.join(layout.stagingDir, name)
    if (ownerAlive(dir, name)) continue
    items.push({path: dir, kind: 'staging', bytes: folderSize(dir)})
  }
  return items
}

function ownerAlive(dir: string, name: string): boolean {
  try {
    const owner = JSON.parse(readFileSync(path.join(dir, 'owner.json'), 'utf8')) as {pid: number; host: string}
    return owner.host !== os.hostname() || processAlive(owner.pid)
  } catch {
    // No readable owner.json (killed before writing it, or a query's scratch folder): both
    // carry the owner's pid in their name — `<time>-<pid>-<random>` and `query-<pid>-<random>`.
    const pid = /^(?:query|[0-9a-z]+)-(\d+)-[0-9a-f]+$/.exec(name)?.[1]
    if (pid) return processAlive(Number(pid))
    const stat = statSync(dir, {throwIfNoEntry: false})
    return stat !== undefined && Date.now() - stat.mtimeMs < 60_000 // unknown shape: leave it a minute
  }
}

async function referencedObjects(connection: DuckDBConnection, layout: LakeLayout, live: Set<string>): Promise<Set<string>> {
  const referenced = new Set<string>()
  for (const def of allTables()) {
    const refs = def.columns.filter((c) => c.objectRef)
    if (refs.length === 0) continue
    const prefix = layout.tableDir(def.id) + path.sep
    const list = [...live].filter((f) => f.startsWith(prefix) && existsSync(f))
    if (list.length === 0) continue
    const files = `[${list.map((f) => quotedString(f)).join(', ')}]`
    for (const column of refs) {
      const rows = (
        await connection.runAndReadAll(
          `SELECT DISTINCT ${quotedIdentifier(column.name)} FROM read_parquet(${files}, union_by_name = true) WHERE ${quotedIdentifier(column.name)} IS NOT NULL`,
        )
      ).getRows()
      for (const [sha] of rows) referenced.add(String(sha))
    }
  }
  return referenced
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir).sort()
  } catch {
    return []
  }
}

function filesUnder(dir: string): string[] {
  const files: string[] = []
  for (const name of safeList(dir)) {
    const p = path.join(dir, name)
    const stat = statSync(p, {throwIfNoEntry: false})
    if (stat?.isDirectory()) files.push(...filesUnder(p))
    else if (stat) files.push(p)
  }
  return files
}

function sizeOf(file: string): number {
  return statSync(file, {throwIfNoEntry: false})?.size ?? 0
}

function folderSize(dir: string): number {
  let total = 0
  for (const name of safeList(dir)) {
    const p = path.join(dir, name)
    const stat = statSync(p, {throwIfNoEntry: false})
    if (!stat) continue
    total += stat.isDirectory() ? folderSize(p) : stat.size
  }
  return total
}
