/**
 * Another process holding the catalog lock: opens `<lake>/catalog.duckdb` with
 * @duckdb/node-api, writes `marker` once it holds it, and lets go when its stdin is closed.
 * `marker` lets a caller whose event loop is blocked (a synchronous progress hook) wait for it.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import path from 'node:path'

import {REPO_ROOT} from './lakeFixtures.js'

const HOLDER = `
import {DuckDBInstance} from '@duckdb/node-api'
import {writeFileSync} from 'node:fs'
const db = await DuckDBInstance.create(process.env.HOLD_FILE)
const connection = await db.connect()
await connection.run('SELECT count(*) FROM runs')
writeFileSync(process.env.HOLD_MARKER, String(process.pid))
process.stdin.on('end', () => {
  connection.closeSync()
  db.closeSync()
})
process.stdin.resume()
`

export function startCatalogHolder(lake: string, marker: string): ChildProcess {
  return spawn(process.execPath, ['--input-type=module', '-e', HOLDER], {
    cwd: REPO_ROOT, // resolves @duckdb/node-api
    env: {...process.env, HOLD_FILE: path.join(lake, 'catalog.duckdb'), HOLD_MARKER: marker},
    stdio: ['pipe', 'ignore', 'inherit'],
  })
}

/** Blocks this thread (event loop included) until the holder holds the lock, or fails after 30 s. */
export function waitForHolderSync(marker: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4))
  const deadline = Date.now() + 30_000
  while (!existsSync(marker)) {
    if (Date.now() > deadline) throw new Error(`the catalog holder did not report holding the lock (${marker})`)
    Atomics.wait(pause, 0, 0, 10)
  }
}

/** Lets the holder go and waits until it has exited. */
export async function releaseHolder(holder: ChildProcess): Promise<void> {
  if (holder.exitCode !== null || holder.signalCode !== null) return
  const exited = new Promise((resolve) => holder.once('exit', resolve))
  holder.stdin!.end()
  await exited
}
