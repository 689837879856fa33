/**
 * A damaged or missing lake object is named by export with a hint that repairs it, and the
 * hint works: `etl run silver --full` rewrites a derivative whose bytes are wrong or gone,
 * `ingest --rehash` rewrites an original. (An existing object is replaced only when its bytes
 * differ from the content in hand, atomically like any object write.)
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {verifyExport} from '../../src/export/manifest.js'
import {exportGold} from '../../src/lake/exportGold.js'
import {ingest} from '../../src/lake/ingest.js'
import {putObject} from '../../src/lake/objects.js'
import {runSilver} from '../../src/lake/silver.js'
import {buildGoldLake} from '../helpers/goldLake.js'
import {lakeRows, tempDir, writeImage} from '../helpers/lakeFixtures.js'
import {LakeLayout} from '../../src/lake/layout.js'

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

function damage(file: string): void {
  const bytes = readFileSync(file)
  bytes[bytes.length >> 1] ^= 0xff
  writeFileSync(file, bytes)
}

test('damaged and missing objects: export names them with a hint, and following the hint repairs them', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-repair-')
  t.after(cleanup)
  const {lake, layout} = await buildGoldLake(dir, 4)
  const [row] = await lakeRows(lake, 'SELECT sha256, image_sha256 FROM gold.pairs ORDER BY sha256 LIMIT 1')
  const derivative = layout.objectPath(row!.image_sha256)
  const original = layout.objectPath(row!.sha256)
  let n = 0
  const exportTo = (options: {original?: boolean; verifyImages?: boolean} = {}) => exportGold(layout, {format: 'webdataset', outDir: path.join(dir, `out${n++}`), ...options})

  // A derivative with a flipped byte: the size is right, so only --verify-images sees it; it names
  // the object, and silver --full with the same settings rewrites it.
  damage(derivative)
  await assert.rejects(exportTo({verifyImages: true}), (error: any) => {
    assert.equal(error.code, 'EXPORT_HASH_MISMATCH')
    assert.match(error.hint, /a silver derivative with mlcap etl run silver --full \(same settings\)/)
    return true
  })
  await runSilver(layout, {full: true})
  assert.equal(sha256(readFileSync(derivative)), row!.image_sha256, 'silver --full rewrote the damaged derivative')
  assert.deepEqual(await verifyExport((await exportTo()).outDir), {ok: true, problems: []})

  // A truncated derivative: every export sees that its size is not the lake's record.
  writeFileSync(derivative, readFileSync(derivative).subarray(0, 100))
  await assert.rejects(exportTo(), (error: any) => {
    assert.equal(error.code, 'EXPORT_OBJECT_DAMAGED')
    assert.match(error.message, new RegExp(`the normalized image ${row!.image_sha256} of gold image ${row!.sha256} is damaged: .* is 100 bytes; the lake recorded \\d+`))
    assert.match(error.hint, /mlcap etl run silver --full \(same settings\)/)
    return true
  })
  await runSilver(layout, {full: true})
  assert.equal(sha256(readFileSync(derivative)), row!.image_sha256, 'silver --full rewrote the truncated derivative')

  // A derivative that is gone: the same.
  rmSync(derivative)
  await assert.rejects(exportTo(), (error: any) => {
    assert.equal(error.code, 'EXPORT_OBJECT_MISSING')
    assert.match(error.hint, /mlcap etl run silver --full \(same settings\)/)
    return true
  })
  await runSilver(layout, {full: true})
  assert.equal(sha256(readFileSync(derivative)), row!.image_sha256)

  // An original with a flipped byte: ingesting its file again with --rehash rewrites it.
  damage(original)
  await assert.rejects(exportTo({original: true, verifyImages: true}), (error: any) => {
    assert.equal(error.code, 'EXPORT_HASH_MISMATCH')
    assert.match(error.hint, /an original by ingesting its file again \(mlcap ingest <file> --rehash\)/)
    return true
  })
  await ingest(layout, [path.join(dir, 'photos')], {rehash: true})
  assert.equal(sha256(readFileSync(original)), row!.sha256, 'ingest --rehash rewrote the damaged original')
  assert.deepEqual(await verifyExport((await exportTo({original: true})).outDir), {ok: true, problems: []})
})

test('putObject leaves an intact object in place (same inode, nothing rewritten) and reports it existed', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-putobject-')
  t.after(cleanup)
  const {layout} = await buildGoldLake(dir, 1)
  const bytes = Buffer.from('some object bytes')
  const hash = sha256(bytes)
  assert.equal(await putObject(layout, hash, bytes), true)
  const before = statSync(layout.objectPath(hash)).ino
  assert.equal(await putObject(layout, hash, bytes), false)
  assert.equal(statSync(layout.objectPath(hash)).ino, before)
  damage(layout.objectPath(hash))
  assert.equal(await putObject(layout, hash, bytes), true, 'a damaged object is written again')
  assert.ok(readFileSync(layout.objectPath(hash)).equals(bytes))
})

test('silver: an original gone from the object store is rejected object_missing, and the message says how to bring it back', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-objmissing-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  const photos = path.join(dir, 'photos')
  const shas: string[] = []
  for (let i = 0; i < 3; i++) shas.push(sha256(await writeImage(path.join(photos, `p${i}.png`), i, {width: 64, height: 48})))
  await ingest(layout, [photos])
  rmSync(layout.objectPath(shas[1]!))

  const first = await runSilver(layout)
  assert.deepEqual(first.rejects, {object_missing: 1})
  const [rejected] = await lakeRows(layout.root, `SELECT sha256, status, reason, message FROM silver.images WHERE status = 'rejected'`)
  assert.deepEqual([rejected!.sha256, rejected!.reason], [shas[1], 'object_missing'])
  assert.match(rejected!.message, /Ingest its file again \(mlcap ingest <file> --rehash\), then rebuild silver \(mlcap etl run silver --full\)/)

  // Following the message: --rehash stores the bytes again, --full processes the image.
  await ingest(layout, [photos], {rehash: true})
  assert.equal(sha256(readFileSync(layout.objectPath(shas[1]!))), shas[1])
  await runSilver(layout, {full: true})
  assert.deepEqual(await lakeRows(layout.root, `SELECT status, count(*)::INTEGER AS n FROM silver.images GROUP BY status`), [{status: 'ok', n: 3}])
})
