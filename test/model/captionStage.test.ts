/**
 * The caption stage through the real lake and the real runtime (Transformers.js +
 * onnxruntime on the tiny random-weight model, offline): one model caption per ok silver
 * image with full provenance, picked up by gold; re-runs add nothing; new generation
 * settings caption again; failed, empty or undecodable generations become rejected rows,
 * never captions, and are retried only on request; an interrupt commits what is complete.
 */
import {before, after, test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {modelCaptionId, canonicalJson, runCaptionStage} from '../../src/lake/captionStage.js'
import {runGold} from '../../src/lake/gold.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runSilver} from '../../src/lake/silver.js'
import {blobImage, lakeCount, lakeRows, tempDir} from '../helpers/lakeFixtures.js'
import {writeTinyCaptioner} from '../helpers/tinyCaptioner.js'

const TOKENS = 6
let root: string
let cleanup: () => void
let modelDir: string
let modelCache: string

/** A lake with `count` ingested and silvered images (every third with a human caption). */
async function silverLake(name: string, count: number, firstSeed = 0): Promise<LakeLayout> {
  const photos = path.join(root, `${name}-photos`)
  mkdirSync(photos, {recursive: true})
  for (let i = 0; i < count; i++) {
    writeFileSync(path.join(photos, `p${i}.png`), await blobImage(firstSeed + i))
    if (i % 3 === 0) writeFileSync(path.join(photos, `p${i}.txt`), `a human caption of picture ${i}`)
  }
  const layout = new LakeLayout(path.join(root, name))
  await ingest(layout, [photos])
  await runSilver(layout)
  return layout
}

before(async () => {
  ;({dir: root, cleanup} = tempDir('mlcap-caption-stage-'))
  modelDir = path.join(root, 'models', 'tiny')
  modelCache = path.join(root, 'model-cache')
  await writeTinyCaptioner(modelDir, {captionTokens: TOKENS})
})

after(() => cleanup())

const base = () => ({model: modelDir, cacheDir: modelCache, workers: 1, threadsPerWorker: 1})

test('captions every ok image once, with provenance; gold picks the captions up; a re-run adds nothing', async () => {
  const layout = await silverLake('lake-main', 7)
  const progress: number[] = []
  const first = await runCaptionStage(layout, {...base(), onProgress: (done) => progress.push(done)})
  assert.equal(first.status, 'succeeded')
  assert.equal(first.rowsIn, 7)
  assert.deepEqual(first.added, {'silver.captions': 7})
  assert.deepEqual(first.rejects, {})
  assert.equal(progress.at(-1), 7)
  assert.equal(first.params.model, modelDir)
  assert.match(String(first.params.revision), /^[0-9a-f]{64}$/)
  assert.deepEqual(first.params.generation, {do_sample: false, max_new_tokens: 20, num_beams: 1})
  assert.equal(first.params.workers, 1)

  const rows = await lakeRows(
    layout.root,
    `SELECT c.*, CAST(c.generation AS VARCHAR) AS gen FROM silver.captions c WHERE source = 'model' ORDER BY sha256`,
  )
  assert.equal(rows.length, 7)
  const okImages = await lakeRows(layout.root, `SELECT sha256 FROM silver.images WHERE status = 'ok' ORDER BY sha256`)
  assert.deepEqual(rows.map((r) => r.sha256), okImages.map((r) => r.sha256))
  for (const r of rows) {
    assert.equal(r.status, 'ok')
    assert.match(r.text, new RegExp(`^[a-z]{${TOKENS}}$`))
    assert.equal(r.raw_text, r.text)
    assert.equal(r.words, 1)
    assert.equal(r.source_kind, 'model')
    assert.equal(r.model_id, modelDir)
    assert.equal(r.model_revision, first.params.revision)
    assert.equal(r.model_dtype, 'fp32')
    assert.equal(r.gen, '{"do_sample":false,"max_new_tokens":20,"num_beams":1}')
    assert.equal(r.cleaning_version, 1)
    assert.equal(r.run_id, first.runId)
    assert.equal(
      r.caption_id,
      modelCaptionId(r.sha256, {modelId: modelDir, revision: String(r.model_revision), dtype: 'fp32', generation: canonicalJson({max_new_tokens: 20, num_beams: 1, do_sample: false})}),
    )
  }
  assert.ok(new Set(rows.map((r) => r.text)).size >= 3, 'distinct images get distinct captions')
  const run = await lakeRows(layout.root, `SELECT stage, status, params FROM lake.runs WHERE run_id = '${first.runId}'`)
  assert.equal(run[0]!.stage, 'caption')
  assert.equal(run[0]!.status, 'succeeded')
  assert.equal(JSON.parse(run[0]!.params).revision, first.params.revision)

  const gold = await runGold(layout)
  assert.equal(gold.status, 'succeeded')
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM gold.pairs WHERE caption_source = 'model' AND model_id = '${modelDir}'`), 7)
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM gold.pairs WHERE caption_source = 'human'`), 3)

  const again = await runCaptionStage(layout, base())
  assert.equal(again.status, 'nothing_to_do')
  assert.deepEqual(again.commits, [])
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model'`), 7)

  // Other generation settings are other work: every image is captioned again, once.
  const shorter = await runCaptionStage(layout, {...base(), maxNewTokens: 3})
  assert.deepEqual(shorter.added, {'silver.captions': 7})
  const short = await lakeRows(layout.root, `SELECT text FROM silver.captions WHERE source = 'model' AND json_extract(generation, '$.max_new_tokens') = 3`)
  assert.equal(short.length, 7)
  for (const r of short) assert.match(r.text, /^[a-z]{3}$/)
  assert.equal((await runCaptionStage(layout, {...base(), maxNewTokens: 3})).status, 'nothing_to_do')
  assert.equal(await lakeCount(layout.root, `SELECT count(DISTINCT caption_id) FROM silver.captions`), await lakeCount(layout.root, `SELECT count(*) FROM silver.captions`))
})

test('an empty generation and an undecodable derivative become rejected rows, never captions; retried only with retryFailed', async () => {
  const layout = await silverLake('lake-reject', 4, 40)
  const eosOnly = path.join(root, 'models', 'eos-only')
  await writeTinyCaptioner(eosOnly, {captionTokens: 0})
  const empty = await runCaptionStage(layout, {...base(), model: eosOnly})
  assert.equal(empty.status, 'succeeded')
  assert.deepEqual(empty.rejects, {empty: 4})
  const rejected = await lakeRows(layout.root, `SELECT * FROM silver.captions WHERE source = 'model'`)
  assert.equal(rejected.length, 4)
  for (const r of rejected) {
    assert.equal(r.status, 'rejected')
    assert.equal(r.reason, 'empty')
    assert.equal(r.text, null)
    assert.match(r.message, /^caption: generation produced no caption text .*\(CAPTION_EMPTY\)$/)
  }
  assert.equal((await runCaptionStage(layout, {...base(), model: eosOnly})).status, 'nothing_to_do', 'the same settings do not retry')
  const retried = await runCaptionStage(layout, {...base(), model: eosOnly, retryFailed: true})
  assert.deepEqual(retried.rejects, {empty: 4})
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model' AND status = 'rejected'`), 8)
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model' AND status = 'ok'`), 0)

  // Break one derivative in the object store: that image is rejected, the others captioned.
  const [victim] = await lakeRows(layout.root, `SELECT sha256, normalized_sha256 FROM silver.images WHERE status = 'ok' ORDER BY sha256 LIMIT 1`)
  writeFileSync(layout.objectPath(victim!.normalized_sha256), 'this is not a JPEG')
  const mixed = await runCaptionStage(layout, base())
  assert.deepEqual(mixed.rejects, {undecodable: 1})
  assert.deepEqual(mixed.added, {'silver.captions': 4})
  const bad = await lakeRows(layout.root, `SELECT * FROM silver.captions WHERE source = 'model' AND sha256 = '${victim!.sha256}' AND model_id = '${modelDir}'`)
  assert.equal(bad.length, 1)
  assert.equal(bad[0]!.status, 'rejected')
  assert.equal(bad[0]!.text, null)
  assert.match(bad[0]!.message, /^caption: image of 18 bytes could not be decoded/)
  // Gold never sees a rejected caption.
  await runGold(layout)
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM gold.pairs WHERE caption_source = 'model'`), 3)
})

test('an interrupt stops feeding the model, commits what is complete, and the next run finishes the rest', async () => {
  const layout = await silverLake('lake-abort', 40, 100)
  const controller = new AbortController()
  const first = await runCaptionStage(layout, {
    ...base(),
    chunkSize: 4,
    onProgress: (done) => {
      if (done === 4) controller.abort()
    },
    signal: controller.signal,
  })
  assert.equal(first.status, 'interrupted')
  const committed = await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model'`)
  assert.ok(committed >= 4 && committed < 40, `committed ${committed}`)
  assert.equal(committed, first.rowsIn)
  const runs = await lakeRows(layout.root, `SELECT status FROM lake.runs WHERE run_id = '${first.runId}'`)
  assert.equal(runs[0]!.status, 'interrupted')

  const second = await runCaptionStage(layout, base())
  assert.equal(second.status, 'succeeded')
  assert.equal(second.rowsIn, 40 - committed)
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model' AND status = 'ok'`), 40)
  assert.equal(await lakeCount(layout.root, `SELECT count(DISTINCT sha256) FROM silver.captions WHERE source = 'model'`), 40)
})

test('a missing model fails before any work, naming the cache folder; the failure is not a caption', async () => {
  const layout = await silverLake('lake-nomodel', 2, 200)
  await assert.rejects(runCaptionStage(layout, {cacheDir: modelCache}), (e: any) => {
    assert.equal(e.code, 'MODEL_NOT_FOUND')
    assert.ok(e.message.includes(JSON.stringify(path.join(modelCache, 'Xenova', 'vit-gpt2-image-captioning'))), e.message)
    assert.match(e.message, /mlcap models pull Xenova\/vit-gpt2-image-captioning/)
    return true
  })
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM silver.captions WHERE source = 'model'`), 0)
})
