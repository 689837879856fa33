/**
 * gc against a writer that reuses an object while gc runs. putObject does not rewrite an
 * object that already holds the right bytes: it refreshes its age, so that gc keeps it until
 * the commit that will name it. gc, though, decides from an object's age and removes it later,
 * after it has looked at every object; a refresh that lands between the two must still keep
 * the object, or the commit names an original that is gone.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, renameSync, utimesSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {ensureCatalog} from '../../src/lake/catalog.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {putObject} from '../../src/lake/objects.js'
import {collect, parseJson, startCli, tempDir} from '../helpers/lakeFixtures.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

test('an object a writer reuses while gc is removing others is kept', {timeout: 60_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gc-race-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ensureCatalog(layout)
  const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000)
  // Debris of killed runs, two hours old: gc (default --min-age 1 h) removes all of it, in
  // name order. Thousands of them, so the removal takes a while.
  const debrisDir = path.join(layout.objectsDir, '00')
  mkdirSync(debrisDir, {recursive: true})
  const debris: string[] = []
  for (let i = 0; i < 6000; i++) {
    const file = path.join(debrisDir, `00${String(i).padStart(6, '0')}${'0'.repeat(56)}`)
    writeFileSync(file, 'x')
    utimesSync(file, twoHoursAgo, twoHoursAgo)
    debris.push(file)
  }
  // An object as old, sorted after the debris: what a killed ingest left of a photo…
  let bytes: Buffer
  do bytes = randomBytes(64)
  while (!sha256(bytes).startsWith('f'))
  const sha = sha256(bytes)
  assert.equal(await putObject(layout, sha, bytes), true)
  utimesSync(layout.objectPath(sha), twoHoursAgo, twoHoursAgo)

  const gc = startCli(['gc', '--lake', layout.root, '--json'])
  const done = collect(gc, Date.now(), {timeoutMs: 50_000})
  // …that an ingest stores again once gc has judged every object and is removing the debris
  // (the first debris object is gone), before its commit.
  const deadline = Date.now() + 40_000
  while (existsSync(debris[0]) && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve))
  assert.ok(existsSync(debris[debris.length - 1]), 'gc finished before the object was stored again: the test needs more debris')
  assert.equal(await putObject(layout, sha, bytes), false) // already there: its age refreshed, not rewritten
  const result = await done
  assert.equal(result.code, 0, result.stderr)

  assert.ok(existsSync(layout.objectPath(sha)), 'gc removed an object a writer had just stored for its commit')
  assert.deepEqual(readFileSync(layout.objectPath(sha)), bytes)
  const removed = parseJson(result).removed as Array<{path: string}>
  assert.equal(removed.length, debris.length, 'gc reports only what it removed')
  assert.ok(debris.every((file) => !existsSync(file)))
})

test('an object a killed gc left set aside is put back by the next gc', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gc-aside-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ensureCatalog(layout)
  const bytes = Buffer.from('an original')
  const sha = sha256(bytes)
  await putObject(layout, sha, bytes)
  // gc renames an object aside before deciding; killed right then, it leaves only the copy aside.
  const aside = path.join(path.dirname(layout.objectPath(sha)), `.gc-${sha}-0a0b0c0d`)
  renameSync(layout.objectPath(sha), aside)
  const gc = await collect(startCli(['gc', '--lake', layout.root, '--json']), Date.now())
  assert.equal(gc.code, 0, gc.stderr)
  assert.deepEqual(readFileSync(layout.objectPath(sha)), bytes)
  assert.ok(!existsSync(aside))
})
