/**
 * Promise 3 (many processes at once) for `etl run --full`: a rebuild replaces its tables in
 * one commit with what it made from the snapshot it read. Another run that commits to those
 * tables meanwhile (watch --then silver, etl run caption, an incremental gold) must not have
 * its rows retired with the old ones: silver --full is refused with LAKE_CONFLICT, gold
 * --full starts over from the new state.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {MlcapError} from '../../src/lake/errors.js'
import {runGold} from '../../src/lake/gold.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runSilver} from '../../src/lake/silver.js'
import {blobImage, CLI, lakeRows, REPO_ROOT, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

const MODEL_CAPTION_WORKER = path.join(REPO_ROOT, 'test/helpers/modelCaptionWorker.ts')

test('silver --full is refused when another run commits to silver during the rebuild; that run keeps its rows', {timeout: 120_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-silver-race-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await writeImageFolder(path.join(dir, 'in'), 4, {captionEvery: 1})
  await ingest(layout, [path.join(dir, 'in')])
  await runSilver(layout, {normalize: {minSide: 4}}) // the fixture images are 16 px
  const silverBefore = await lakeRows(layout.root, `SELECT sha256, normalized_width FROM silver.images ORDER BY sha256`)
  const image = silverBefore[0].sha256 as string

  let other: {commitId: number} | undefined
  await assert.rejects(
    runSilver(layout, {
      full: true,
      normalize: {minSide: 4, maxSide: 8},
      onProgress: () => {
        if (other) return
        // Mid-rebuild (after its snapshot, before its commit), another process commits a model caption, as `etl run caption` does.
        const out = execFileSync(process.execPath, ['--import', 'tsx', MODEL_CAPTION_WORKER, layout.root, image, 'model-caption-late'], {cwd: REPO_ROOT, encoding: 'utf8'})
        other = JSON.parse(out) as {commitId: number}
      },
    }),
    (error: MlcapError) => {
      assert.equal(error.code, 'LAKE_CONFLICT')
      assert.match(error.message, new RegExp(`^silver --full: run caption-\\S+ committed to silver \\(commit ${other!.commitId}\\) while this rebuild ran from commit \\d+; replacing silver would have dropped its rows, so the rebuild was not committed$`))
      assert.match(error.hint ?? '', /mlcap etl run silver --full/)
      return true
    },
  )

  // The other run's caption is there, and silver is as it was: the rebuild committed nothing.
  const late = await lakeRows(layout.root, `SELECT caption_id, source FROM silver.captions WHERE caption_id = 'model-caption-late'`)
  assert.deepEqual(late, [{caption_id: 'model-caption-late', source: 'model'}])
  assert.deepEqual(await lakeRows(layout.root, `SELECT sha256, normalized_width FROM silver.images ORDER BY sha256`), silverBefore)
  const [refused] = await lakeRows(layout.root, `SELECT status, error FROM lake.runs WHERE stage = 'silver' ORDER BY started_at DESC LIMIT 1`)
  assert.equal(refused.status, 'failed')
  assert.match(refused.error, /^silver --full: run caption-/)

  // Run again with nobody else writing, the rebuild commits and carries the model caption.
  const summary = await runSilver(layout, {full: true, normalize: {minSide: 4, maxSide: 8}})
  assert.equal(summary.status, 'succeeded')
  assert.deepEqual(await lakeRows(layout.root, `SELECT caption_id FROM silver.captions WHERE source = 'model'`), [{caption_id: 'model-caption-late'}])
  const [side] = await lakeRows(layout.root, `SELECT max(normalized_width) AS w FROM silver.images`)
  assert.equal(Number(side.w), 8)
})

test('gold --full starts over when another gold run commits during the rebuild, so the pairs that run added stay in gold', {timeout: 180_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-full-race-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  const captioned = async (name: string, first: number, count: number) => {
    const folder = path.join(dir, name)
    mkdirSync(folder)
    for (let i = first; i < first + count; i++) {
      writeFileSync(path.join(folder, `p${i}.png`), await blobImage(i, {width: 96, height: 72}))
      writeFileSync(path.join(folder, `p${i}.txt`), `blobs of colour number ${i}`)
    }
    return folder
  }
  await ingest(layout, [await captioned('early', 0, 4)])
  await runSilver(layout)
  await runGold(layout)
  const late = await captioned('late', 10, 3)

  let otherPairs: string[] | undefined
  const cli = (...args: string[]) => execFileSync(process.execPath, [CLI, ...args, '--lake', layout.root], {encoding: 'utf8'})
  const summary = await runGold(layout, {
    full: true,
    onProgress: () => {
      if (otherPairs) return
      // Mid-rebuild, another process brings new images through silver and an incremental gold.
      cli('ingest', late)
      cli('etl', 'run', 'silver', 'gold')
      otherPairs = (JSON.parse(cli('query', 'select pair_id from gold.pairs order by 1', '--format', 'json')) as Array<{pair_id: string}>).map((r) => r.pair_id)
    },
  })
  assert.equal(summary.status, 'succeeded')
  assert.equal(summary.params.full, true)
  assert.equal(otherPairs!.length, 7, 'the other gold run committed pairs of the new images')

  // Every pair is still in gold, rebuilt: the first attempt was refused, the second read the new silver.
  const pairs = await lakeRows(layout.root, `SELECT pair_id, run_id FROM gold.pairs ORDER BY pair_id`)
  assert.deepEqual(pairs.map((p) => p.pair_id), otherPairs)
  assert.ok(pairs.every((p) => p.run_id === summary.runId), 'gold is the rebuild')
  const refused = await lakeRows(layout.root, `SELECT error FROM lake.runs WHERE stage = 'gold' AND status = 'failed'`)
  assert.equal(refused.length, 1)
  assert.match(refused[0].error, /gold\.pairs, gold\.excluded changed after commit \d+ \(commit \d+ of run gold-/)
})

test('a gold run overtaken on every attempt gives up after 5 with an error that says so and names what to pause', {timeout: 180_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-overtaken-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  const captioned = async (i: number) => {
    const folder = path.join(dir, `in${i}`)
    mkdirSync(folder)
    writeFileSync(path.join(folder, `p${i}.png`), await blobImage(i, {width: 96, height: 72}))
    writeFileSync(path.join(folder, `p${i}.txt`), `blobs of colour number ${i}`)
    return folder
  }
  await ingest(layout, [await captioned(0)])
  await runSilver(layout)
  // Prepared now: the callback below must be synchronous, so that the other writer has committed before this attempt commits.
  const folders = [] as string[]
  for (let i = 1; i <= 5; i++) folders.push(await captioned(i))
  const cli = (...args: string[]) => execFileSync(process.execPath, [CLI, ...args, '--lake', layout.root], {encoding: 'utf8'})
  let attempts = 0
  await assert.rejects(
    runGold(layout, {
      full: true,
      onProgress: (done) => {
        if (done !== 1) return
        // Each attempt, after its snapshot and before its commit, another gold run commits (as `watch --then all` would).
        cli('ingest', folders[attempts++]!)
        cli('etl', 'run', 'silver', 'gold')
      },
    }),
    (error: MlcapError) => {
      assert.equal(error.code, 'LAKE_CONFLICT')
      assert.match(error.message, /^gold: 5 attempts in a row were overtaken by other runs .* \(the last: commit \d+ of run gold-\S+\); nothing of the last attempt was committed$/)
      assert.match(error.hint ?? '', /mlcap watch --then gold/)
      return true
    },
  )
  assert.equal(attempts, 5)
  // Nothing of the refused rebuild is in gold: every pair there is from the other runs.
  const runs = await lakeRows(layout.root, `SELECT DISTINCT run_id FROM gold.pairs`)
  assert.equal(runs.length, 5)
})
