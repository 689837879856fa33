/**
 * Durability against a power cut (src/lake/durable.ts): every data file a commit names is on
 * disk, with its name, before the catalog commit that names it. A power cut cannot be made
 * in a test; what it would find can: the system calls, in order, traced by strace around a
 * real ingest and a real compaction through the CLI.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {CLI, cliEnv, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

const HAS_STRACE = spawnSync('strace', ['-V']).status === 0

/** Runs the CLI under strace; returns the traced calls as `{call, path, to?}` in the order they returned. */
function traced(args: string[], traceFile: string): Array<{call: string; path: string; to?: string}> {
  const trace = ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', '-o', traceFile]
  const result = spawnSync('strace', [...trace, process.execPath, CLI, ...args], {env: cliEnv(), encoding: 'utf8'})
  assert.equal(result.status, 0, result.stderr)
  const calls: Array<{call: string; path: string; to?: string}> = []
  for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
    const sync = /(fsync|fdatasync)\(\d+<([^>]*)>/.exec(line)
    if (sync) calls.push({call: 'sync', path: sync[2]!})
    const rename = /rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"/.exec(line)
    if (rename) calls.push({call: 'rename', path: rename[1]!, to: rename[2]!})
  }
  return calls
}

/** For each staged Parquet file moved into a table: synced, its folder synced, then the catalog's log synced, all before the move. */
function assertSyncedBeforeCommit(calls: ReturnType<typeof traced>, lake: string): number {
  const moves = calls.map((c, i) => ({...c, i})).filter((c) => c.call === 'rename' && c.path.includes('/_staging/') && c.path.endsWith('.parquet'))
  for (const move of moves) {
    const synced = calls.findIndex((c, i) => i < move.i && c.call === 'sync' && c.path === move.path)
    assert.ok(synced >= 0, `${move.path} was moved into ${move.to} without being synced first`)
    const folder = calls.findIndex((c, i) => i > synced && i < move.i && c.call === 'sync' && c.path === path.dirname(move.path))
    assert.ok(folder >= 0, `the staging folder of ${move.path} was not synced between the file and its move`)
    const log = calls.findIndex((c, i) => i > folder && i < move.i && c.call === 'sync' && c.path === path.join(lake, 'catalog.duckdb.wal'))
    assert.ok(log >= 0, `no catalog commit between syncing ${move.path} and moving it`)
  }
  return moves.length
}

test('a commit syncs its data files and their staging folder before the catalog commit that names them (ingest, compact)', {skip: HAS_STRACE ? false : 'strace is not installed (apt-get install strace)'}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-durable-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  for (const i of [0, 1]) await writeImageFolder(path.join(dir, `in${i}`), 3, {firstSeed: i * 10, captionEvery: 2})

  const ingest = traced(['ingest', path.join(dir, 'in0'), '--lake', lake, '--json'], path.join(dir, 'ingest.trace'))
  assert.ok(assertSyncedBeforeCommit(ingest, lake) >= 3, 'bronze.images, bronze.sources and bronze.captions files were moved into place')

  traced(['ingest', path.join(dir, 'in1'), '--lake', lake, '--json'], path.join(dir, 'ingest2.trace'))
  const compact = traced(['compact', '--lake', lake, '--json'], path.join(dir, 'compact.trace'))
  assert.ok(assertSyncedBeforeCommit(compact, lake) >= 1, 'compaction moved a merged file into place')
})
