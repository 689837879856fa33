import {randomBytes} from 'node:crypto'
import {appendFileSync, mkdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {LakeLayout} from './layout.js'
import {getTable} from './schema.js'

/** Pending-row buffers of flushed batches, for the next batch (a run stages one batch after another). */
const spareBuffers: Buffer[] = []

/**
 * Rows waiting for a commit. They are appended as JSON lines to files under
 * `_staging/<txid>/` so memory stays flat however large the batch; the commit reads them
 * with DuckDB, drops rows whose keys are already in the table, and writes Parquet.
 * `owner.json` lets gc tell a live writer's staging folder from a crashed one.
 */
export class StagedBatch {
  readonly dir: string
  readonly txid: string
  /** Per table: rows not yet written, as UTF-8 in a buffer outside the JS heap. */
  private readonly pending = new Map<string, {bytes: Buffer; used: number}>()
  private readonly counts = new Map<string, number>()
  /**
   * Rows are written out once a table has this much pending. They wait as bytes in a
   * Buffer, not as strings: strings held for a while outlive scavenges, so V8 copies and
   * promotes them and grows its young generation for them. At 1 MiB of pending strings that
   * was most of what ingest promoted (~1 KB a file), and the heap grew with the number of files.
   */
  private static readonly FLUSH_BYTES = 64 << 10

  constructor(readonly layout: LakeLayout) {
    this.txid = `${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}`
    this.dir = path.join(layout.stagingDir, this.txid)
    mkdirSync(this.dir, {recursive: true})
    writeFileSync(
      path.join(this.dir, 'owner.json'),
      JSON.stringify({pid: process.pid, host: os.hostname(), started_at: new Date().toISOString()}),
    )
  }

  /** The JSON-lines file holding the staged rows of one table. */
  rowsFile(tableId: string): string {
    return path.join(this.dir, `${tableId}.jsonl`)
  }

  add(tableId: string, row: Record<string, unknown>): void {
    getTable(tableId) // fail fast on a misspelt table
    const line = JSON.stringify(row) + '\n'
    this.counts.set(tableId, (this.counts.get(tableId) ?? 0) + 1)
    const size = Buffer.byteLength(line)
    let pending = this.pending.get(tableId)
    if (pending && pending.used + size > pending.bytes.length) this.flushTable(tableId)
    if (size > StagedBatch.FLUSH_BYTES) {
      appendFileSync(this.rowsFile(tableId), line) // a row larger than the buffer goes out on its own
      return
    }
    if (!pending) {
      pending = {bytes: spareBuffers.pop() ?? Buffer.allocUnsafeSlow(StagedBatch.FLUSH_BYTES), used: 0}
      this.pending.set(tableId, pending)
    }
    pending.used += pending.bytes.write(line, pending.used)
  }

  /**
   * Records rows that something else (a DuckDB COPY … (FORMAT json)) wrote straight into
   * `rowsFile(tableId)`. Only valid before any row of that table was added here.
   */
  adoptRowsFile(tableId: string, rows: number): void {
    if ((this.counts.get(tableId) ?? 0) > 0) throw new Error(`lake: ${tableId} already has staged rows; adopt its rows file first`)
    this.counts.set(tableId, rows)
  }

  count(tableId?: string): number {
    if (tableId) return this.counts.get(tableId) ?? 0
    let total = 0
    for (const n of this.counts.values()) total += n
    return total
  }

  tables(): string[] {
    return [...this.counts.keys()].filter((t) => (this.counts.get(t) ?? 0) > 0).sort()
  }

  /** Writes out every pending row (and hands the buffers on: rows added later get new ones). */
  flush(): void {
    for (const tableId of this.pending.keys()) this.flushTable(tableId)
    this.releaseBuffers()
  }

  private releaseBuffers(): void {
    for (const {bytes} of this.pending.values()) if (spareBuffers.length < 8) spareBuffers.push(bytes)
    this.pending.clear()
  }

  private flushTable(tableId: string): void {
    const pending = this.pending.get(tableId)
    if (!pending || pending.used === 0) return
    appendFileSync(this.rowsFile(tableId), pending.bytes.subarray(0, pending.used))
    pending.used = 0
  }

  /** Removes the staging folder (after a commit promoted its files, or to abandon it). */
  discard(): void {
    this.releaseBuffers()
    rmSync(this.dir, {recursive: true, force: true})
  }
}
