/**
 * gc removes exactly what no commit references — dead staging folders, unlisted data
 * files, unreferenced and temporary objects past the minimum age — finishes interrupted
 * promotions, keeps everything live, and changes nothing with --dry-run.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, renameSync, utimesSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {collectGarbage} from '../../src/lake/gc.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {putObject} from '../../src/lake/objects.js'
import {beginRun, finishRun} from '../../src/lake/runs.js'
import {assertLakeConsistent, lakeRows, listFiles, parseJson, runCli, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

/** A pid that certainly belonged to a process that has ended. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {encoding: 'utf8'})
  return Number(child.stdout)
}

const HOUR_AGO = (Date.now() - 2 * 3600_000) / 1000

test('gc removes debris, rolls committed files forward, keeps what is live; --dry-run changes nothing', async () => {
  const {dir, cleanup} = tempDir('mlcap-gc-')
  try {
    const lake = path.join(dir, 'lake')
    const layout = new LakeLayout(lake)
    await writeImageFolder(path.join(dir, 'in'), 8, {captionEvery: 2})
    await ingest(layout, [path.join(dir, 'in')], {batchSize: 4})
    const objectsBefore = listFiles(layout.objectsDir)
    assert.equal(objectsBefore.length, 8)

    // Debris of every kind.
    const deadStaging = path.join(layout.stagingDir, 'dead-tx')
    mkdirSync(deadStaging, {recursive: true})
    writeFileSync(path.join(deadStaging, 'owner.json'), JSON.stringify({pid: deadPid(), host: os.hostname(), started_at: new Date().toISOString()}))
    writeFileSync(path.join(deadStaging, 'bronze.images.jsonl'), '{"sha256":"x"}\n')
    const liveStaging = path.join(layout.stagingDir, 'live-tx')
    mkdirSync(liveStaging)
    writeFileSync(path.join(liveStaging, 'owner.json'), JSON.stringify({pid: process.pid, host: os.hostname(), started_at: new Date().toISOString()}))
    const orphan = path.join(layout.tableDir('bronze.images'), 'part-99999999-deadbeef.parquet')
    writeFileSync(orphan, 'PAR1 not really')
    const oldObject = layout.objectPath('ab'.repeat(32))
    mkdirSync(path.dirname(oldObject), {recursive: true})
    writeFileSync(oldObject, 'unreferenced bytes')
    utimesSync(oldObject, HOUR_AGO, HOUR_AGO)
    const youngObject = layout.objectPath('cd'.repeat(32))
    mkdirSync(path.dirname(youngObject), {recursive: true})
    writeFileSync(youngObject, 'written by an ingest that has not committed yet')
    const tmpObject = path.join(path.dirname(oldObject), `.tmp-${'ab'.repeat(6)}-000000000000`)
    writeFileSync(tmpObject, 'half')
    utimesSync(tmpObject, HOUR_AGO, HOUR_AGO)
    // A committed file whose move into place was interrupted.
    const [unpromoted] = await lakeRows(lake, `SELECT path, staged_path FROM lake.files WHERE table_name = 'bronze.sources' ORDER BY path LIMIT 1`)
    const crashedStaging = path.dirname(unpromoted.staged_path)
    mkdirSync(crashedStaging, {recursive: true})
    renameSync(unpromoted.path, unpromoted.staged_path)
    writeFileSync(path.join(crashedStaging, 'owner.json'), JSON.stringify({pid: deadPid(), host: os.hostname(), started_at: new Date().toISOString()}))

    const everything = listFiles(lake).filter((f) => !f.startsWith('catalog.duckdb'))
    const dry = await runCli(['gc', '--lake', lake, '--dry-run', '--json'])
    assert.equal(dry.code, 0, dry.stderr)
    const planned = parseJson(dry)
    assert.deepEqual(Object.keys(planned).sort(), ['bytes', 'dryRun', 'removed', 'rolledForward'])
    assert.equal(planned.dryRun, true)
    assert.equal(planned.rolledForward, 0)
    const kinds = Object.fromEntries(planned.removed.map((i: {path: string; kind: string}) => [i.path, i.kind]))
    assert.deepEqual(kinds, {
      [deadStaging]: 'staging',
      [crashedStaging]: 'staging',
      [orphan]: 'orphan_data_file',
      [oldObject]: 'unreferenced_object',
      [tmpObject]: 'temporary_object',
    })
    for (const item of planned.removed) assert.ok(Number.isInteger(item.bytes) && item.bytes > 0, JSON.stringify(item))
    assert.equal(planned.bytes, planned.removed.reduce((a: number, i: {bytes: number}) => a + i.bytes, 0))
    assert.deepEqual(listFiles(lake).filter((f) => !f.startsWith('catalog.duckdb')), everything, '--dry-run removed or moved something')

    const text = await runCli(['gc', '--lake', lake, '--dry-run'])
    assert.equal(text.code, 0)
    assert.match(text.stdout, /would remove\s+orphan_data_file/)
    assert.match(text.stdout, /5 item\(s\), .* would be freed\./)

    const real = await collectGarbage(layout, {})
    assert.equal(real.dryRun, false)
    assert.equal(real.rolledForward, 1)
    assert.deepEqual(real.removed.map((i) => i.path).sort(), Object.keys(kinds).sort())
    for (const gone of [deadStaging, crashedStaging, orphan, oldObject, tmpObject]) assert.ok(!existsSync(gone), `${gone} still there`)
    for (const kept of [liveStaging, youngObject, unpromoted.path]) assert.ok(existsSync(kept), `${kept} was removed`)
    assert.deepEqual(listFiles(layout.objectsDir).filter((f) => !f.startsWith('cd/')), objectsBefore, 'every referenced object is kept')
    await assertLakeConsistent(lake, assert)

    // With --min-age 0 the young unreferenced object goes too; a second gc finds nothing.
    const zero = await runCli(['gc', '--lake', lake, '--min-age', '0', '--json'])
    assert.equal(zero.code, 0, zero.stderr)
    assert.deepEqual(parseJson(zero).removed.map((i: {path: string}) => i.path), [youngObject])
    const again = await collectGarbage(layout, {minAgeMs: 0})
    assert.deepEqual(again.removed, [])
    assert.deepEqual(readdirSync(layout.stagingDir), ['live-tx'])
  } finally {
    cleanup()
  }
})

test('storing an object that already exists refreshes its age, so gc cannot take it from a commit in flight', async () => {
  const {dir, cleanup} = tempDir('mlcap-gc-')
  try {
    const lake = path.join(dir, 'lake')
    const layout = new LakeLayout(lake)
    await writeImageFolder(path.join(dir, 'in'), 1)
    await ingest(layout, [path.join(dir, 'in')])
    // An object left hours ago by an ingest that was killed before its commit…
    const sha = 'ef'.repeat(32)
    assert.equal(await putObject(layout, sha, Buffer.from('same bytes')), true)
    utimesSync(layout.objectPath(sha), HOUR_AGO, HOUR_AGO)
    // …is written again now by an ingest whose commit is still to come.
    assert.equal(await putObject(layout, sha, Buffer.from('same bytes')), false)
    const result = await collectGarbage(layout, {})
    assert.deepEqual(result.removed, [], 'gc (default min age) removed an object a running ingest had just stored')
    assert.ok(existsSync(layout.objectPath(sha)))
  } finally {
    cleanup()
  }
})

test('while a run is writing, gc (even --min-age 0) keeps the objects stored since it started; once it ends they may go', async () => {
  const {dir, cleanup} = tempDir('mlcap-gc-')
  try {
    const layout = new LakeLayout(path.join(dir, 'lake'))
    await writeImageFolder(path.join(dir, 'in'), 1)
    await ingest(layout, [path.join(dir, 'in')])
    const run = await beginRun(layout, 'silver', {})
    // A derivative the running stage has stored, its commit still to come.
    const sha = 'cd'.repeat(32)
    await putObject(layout, sha, Buffer.from('a derivative'))
    const during = await collectGarbage(layout, {minAgeMs: 0})
    assert.deepEqual(during.removed.filter((item) => item.kind === 'unreferenced_object'), [])
    assert.ok(existsSync(layout.objectPath(sha)))
    await finishRun(layout, run, {status: 'failed', error: 'test'})
    const after = await collectGarbage(layout, {minAgeMs: 0})
    assert.deepEqual(after.removed.map((item) => [item.kind, path.basename(item.path)]), [['unreferenced_object', sha]])
  } finally {
    cleanup()
  }
})

test('gc removes a staging folder whose process died before writing owner.json, and keeps a live one', async () => {
  const {dir, cleanup} = tempDir('mlcap-gc-owner-')
  try {
    const layout = new LakeLayout(path.join(dir, 'lake'))
    await writeImageFolder(path.join(dir, 'in'), 2)
    await ingest(layout, [path.join(dir, 'in')])
    // Staging folders are named <time>-<pid>-<random>; a kill can land before owner.json exists.
    const dead = path.join(layout.stagingDir, `${Date.now().toString(36)}-${deadPid()}-0badc0de`)
    const live = path.join(layout.stagingDir, `${Date.now().toString(36)}-${process.pid}-0000beef`)
    mkdirSync(dead, {recursive: true})
    mkdirSync(live, {recursive: true})
    const result = await collectGarbage(layout, {minAgeMs: 0})
    assert.deepEqual(result.removed.filter((r) => r.kind === 'staging').map((r) => r.path), [dead])
    assert.ok(!existsSync(dead) && existsSync(live))
  } finally {
    cleanup()
  }
})
