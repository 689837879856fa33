import {readdirSync, statSync} from 'node:fs'
import path from 'node:path'

import {CatalogOptions} from './catalog.js'
import {LakeLayout} from './layout.js'
import {PENDING_WORK} from './pending.js'
import {tableRef, withLakeReader} from './reader.js'
import {runAbandoned, runOwner} from './runs.js'
import {allTables} from './schema.js'

export interface TableStatus {
  table: string
  rows: number
  files: number
  bytes: number
}

export interface LakeStatus {
  lake: string
  commitId: number
  tables: TableStatus[]
  objects: {count: number; bytes: number}
  lastCommits: Array<{commitId: number; committedAt: string; operation: string; runId: string; added: Record<string, number>}>
  rejects: Array<{stage: string; reason: string; count: number}>
  pending: Array<{stage: string; items: number; description: string}>
  running: RunningRun[]
  /** Runs the catalog still records as running whose process on this host is gone (killed or crashed): the next writer records them as interrupted. */
  interrupted: RunningRun[]
}

export interface RunningRun {
  runId: string
  stage: string
  startedAt: string
  pid: number
}

/** Everything `mlcap status` shows, read from one snapshot. */
export async function lakeStatus(layout: LakeLayout, options: CatalogOptions = {}): Promise<LakeStatus> {
  // Retried once on a fresh snapshot if a compaction moves a file away meanwhile.
  return withLakeReader(layout, async (reader) => {
    const c = reader.connection
    const all = async (sql: string) => (await c.runAndReadAll(sql)).getRowObjectsJson()
    const fileStats = new Map<string, {files: number; bytes: number}>()
    for (const row of await all(
      `SELECT table_name, count(*) AS files, sum(bytes) AS bytes FROM lake.files WHERE removed_commit IS NULL GROUP BY 1`,
    )) {
      fileStats.set(String(row.table_name), {files: Number(row.files), bytes: Number(row.bytes)})
    }
    const tables: TableStatus[] = []
    for (const def of allTables()) {
      const rows = await all(`SELECT count(*) AS n FROM ${tableRef(def.id)}`)
      const stats = fileStats.get(def.id) ?? {files: 0, bytes: 0}
      tables.push({table: def.id, rows: Number(rows[0].n), ...stats})
    }
    const lastCommits = (
      await all(`SELECT commit_id, epoch_ms(committed_at) AS committed_ms, operation, run_id, summary FROM lake.commits ORDER BY commit_id DESC LIMIT 5`)
    ).map((r) => ({
      commitId: Number(r.commit_id),
      committedAt: new Date(Number(r.committed_ms)).toISOString(),
      operation: String(r.operation),
      runId: String(r.run_id),
      added: (JSON.parse(String(r.summary ?? '{}')).added ?? {}) as Record<string, number>,
    }))
    const rejects = (
      await all(`SELECT stage, reason, count(*) AS n FROM bronze.rejects GROUP BY ALL ORDER BY n DESC, stage, reason`)
    ).map((r) => ({stage: String(r.stage), reason: String(r.reason), count: Number(r.n)}))
    const pending = []
    for (const work of PENDING_WORK) {
      const rows = await all(work.sql)
      pending.push({stage: work.stage, items: Number(rows[0].n), description: work.description})
    }
    // A reader never writes to the lake: a run whose process is gone is only shown as
    // interrupted here, with the writers' rule (runAbandoned); the next writer records it.
    const running: RunningRun[] = []
    const interrupted: RunningRun[] = []
    for (const r of await all(
      `SELECT run_id, stage, epoch_ms(started_at) AS started_ms, pid, host FROM lake.runs WHERE status = 'running' ORDER BY started_at`,
    )) {
      const owner = runOwner(r.pid, r.host)
      const run = {runId: String(r.run_id), stage: String(r.stage), startedAt: new Date(Number(r.started_ms)).toISOString(), pid: Number(r.pid)}
      ;(runAbandoned(owner) ? interrupted : running).push(run)
    }
    return {
      lake: layout.root,
      commitId: reader.snapshot.commitId,
      tables,
      objects: objectStats(layout),
      lastCommits,
      rejects,
      pending,
      running,
      interrupted,
    }
  }, options)
}

function objectStats(layout: LakeLayout): {count: number; bytes: number} {
  let count = 0
  let bytes = 0
  let shards: string[] = []
  try {
    shards = readdirSync(layout.objectsDir)
  } catch {
    return {count, bytes}
  }
  for (const shard of shards) {
    const dir = path.join(layout.objectsDir, shard)
    for (const name of readdirSync(dir)) {
      if (name.startsWith('.tmp-')) continue
      const stat = statSync(path.join(dir, name), {throwIfNoEntry: false})
      if (!stat) continue
      count++
      bytes += stat.size
    }
  }
  return {count, bytes}
}
