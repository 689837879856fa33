/**
 * Issue 3, promise 2 (exactly once, by keys) for the ETL: each run processes only what is
 * new, a re-run does nothing, changed parameters apply to new rows only, --full rebuilds
 * (rows replaced, never doubled, old files out of the table folder), and `mlcap status`
 * pending counts reach 0.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdirSync, readdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runStages} from '../../src/lake/stages.js'
import {blobImage, lakeCount, lakeRows, parseJson, runCli, tempDir} from '../helpers/lakeFixtures.js'
import {commitModelCaption} from '../helpers/modelCaption.js'

async function writeBatch(dir: string, first: number, count: number): Promise<void> {
  mkdirSync(dir, {recursive: true})
  for (let i = first; i < first + count; i++) {
    writeFileSync(path.join(dir, `img-${i}.png`), await blobImage(i, {width: 96, height: 72}))
    writeFileSync(path.join(dir, `img-${i}.txt`), `a picture of blobs number ${i}`)
  }
}

const parquetIn = (dir: string) => {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.parquet')).sort()
  } catch {
    return []
  }
}

async function pending(lake: string): Promise<Record<string, number>> {
  const result = await runCli(['status', '--lake', lake, '--json'])
  assert.equal(result.code, 0, result.stderr)
  const status = parseJson<{pending: Array<{stage: string; items: number}>}>(result)
  return Object.fromEntries(status.pending.map((p) => [p.stage, p.items]))
}

test('etl all: incremental by keys, re-run does nothing, new parameters for new rows, --full rebuilds in place', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-etlinc-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const layout = new LakeLayout(lake)
  const opts = {concurrency: 2, batchSize: 4}

  // 1. Ten images with captions → etl all.
  await writeBatch(path.join(dir, 'in1'), 0, 10)
  await ingest(layout, [path.join(dir, 'in1')], {concurrency: 2})
  assert.deepEqual(await pending(lake), {silver: 20, caption: 0, gold: 0}, 'status shows the work waiting')
  const [silver1, gold1] = await runStages(layout, ['all'], opts)
  assert.deepEqual([silver1!.stage, silver1!.status, silver1!.rowsIn], ['silver', 'succeeded', 20])
  assert.deepEqual(silver1!.added, {'silver.images': 10, 'silver.captions': 10, 'silver.caption_sources': 10})
  assert.ok(silver1!.commits.length >= 3, `batches of 4 make several commits: ${silver1!.commits}`)
  assert.deepEqual([gold1!.stage, gold1!.rowsIn, gold1!.added['gold.pairs']], ['gold', 10, 10])
  assert.deepEqual(await pending(lake), {silver: 0, caption: 10, gold: 0}, 'nothing pending after the run but the optional model captions')

  // 2. Five more, with new silver and gold parameters: only the new rows are processed, with them.
  await writeBatch(path.join(dir, 'in2'), 10, 5)
  await ingest(layout, [path.join(dir, 'in2')], {concurrency: 2})
  assert.deepEqual(await pending(lake), {silver: 10, caption: 10, gold: 0})
  const [silver2, gold2] = await runStages(layout, ['all'], {
    ...opts,
    silver: {normalize: {maxSide: 48}},
    gold: {filters: {minSide: 0, maxWords: 5}},
  })
  assert.equal(silver2!.rowsIn, 10)
  assert.deepEqual(silver2!.added, {'silver.images': 5, 'silver.captions': 5, 'silver.caption_sources': 5})
  assert.equal(gold2!.rowsIn, 5)
  assert.deepEqual(gold2!.added, {'gold.excluded': 5}, 'the new max_words applies to the new pairs')
  const runs = await lakeRows(lake, `SELECT run_id, stage, rows_in, rows_out, status FROM lake.runs WHERE stage IN ('silver', 'gold') ORDER BY started_at`)
  assert.deepEqual(
    runs.map((r) => [r.stage, Number(r.rows_in), Number(r.rows_out), r.status]),
    [
      ['silver', 20, 30, 'succeeded'],
      ['gold', 10, 10, 'succeeded'],
      ['silver', 10, 15, 'succeeded'],
      ['gold', 5, 5, 'succeeded'],
    ],
  )
  const widths = await lakeRows(lake, `SELECT run_id, list(DISTINCT normalized_width) AS w, count(*) AS n FROM silver.images GROUP BY run_id ORDER BY n DESC`)
  assert.deepEqual(
    widths.map((r) => [r.run_id, r.w, Number(r.n)]),
    [
      [silver1!.runId, [96], 10],
      [silver2!.runId, [48], 5],
    ],
    'old rows keep the old parameters, new rows get the new ones',
  )
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM gold.pairs`), 10, 'old pairs are not reconsidered')
  assert.deepEqual(await pending(lake), {silver: 0, caption: 15, gold: 0})

  // 3. Re-run: nothing to do, no commit, no file.
  const commitsBefore = await lakeCount(lake, `SELECT max(commit_id) FROM lake.commits`)
  const filesBefore = await lakeCount(lake, `SELECT count(*) FROM lake.files`)
  const again = await runStages(layout, ['all'], opts)
  assert.deepEqual(
    again.map((s) => [s.stage, s.status, s.rowsIn, s.commits]),
    [
      ['silver', 'nothing_to_do', 0, []],
      ['gold', 'nothing_to_do', 0, []],
    ],
  )
  assert.equal(await lakeCount(lake, `SELECT max(commit_id) FROM lake.commits`), commitsBefore)
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM lake.files`), filesBefore)

  // 4. --full: every row rebuilt with the given parameters, replaced not doubled, old files retired.
  const oldFiles = parquetIn(layout.tableDir('silver.images'))
  assert.ok(oldFiles.length >= 3)
  // An interrupted rebuild commits nothing: the old rows stay, whole.
  const snapshot = await lakeRows(lake, `SELECT sha256, run_id, commit_id FROM silver.images ORDER BY sha256`)
  const controller = new AbortController()
  const [stopped] = await runStages(layout, ['silver'], {
    ...opts,
    full: true,
    signal: controller.signal,
    onProgress: (done) => {
      if (done === 6) controller.abort()
    },
  })
  assert.deepEqual([stopped!.status, stopped!.added, stopped!.commits], ['interrupted', {}, []])
  assert.ok(stopped!.rowsIn >= 6 && stopped!.rowsIn < 30, `rows_in ${stopped!.rowsIn}`)
  assert.deepEqual(await lakeRows(lake, `SELECT sha256, run_id, commit_id FROM silver.images ORDER BY sha256`), snapshot)
  assert.equal(await lakeCount(lake, `SELECT max(commit_id) FROM lake.commits`), commitsBefore)

  // Readers during the rebuild see the old table or the new one, whole: never a partial rebuild.
  const observed: Array<Promise<{n: number; runs: string[]}>> = []
  const look = async () => {
    const rows = await lakeRows(lake, `SELECT count(*) AS n, list(DISTINCT run_id ORDER BY run_id) AS runs FROM silver.images`)
    return {n: Number(rows[0]!.n), runs: rows[0]!.runs as string[]}
  }
  const [silver3, gold3] = await runStages(layout, ['all'], {
    ...opts,
    full: true,
    silver: {normalize: {maxSide: 48}},
    gold: {filters: {minSide: 0}},
    onProgress: (done) => {
      if (done % 5 === 0 && observed.length < 6) observed.push(look())
    },
  })
  const before = [silver1!.runId, silver2!.runId].sort()
  for (const seen of await Promise.all(observed)) {
    assert.equal(seen.n, 15, `a reader saw ${seen.n} silver images during the --full rebuild (runs ${seen.runs})`)
    assert.ok(JSON.stringify(seen.runs) === JSON.stringify(before) || JSON.stringify(seen.runs) === JSON.stringify([silver3!.runId]), `mixed: ${seen.runs}`)
  }
  assert.ok(observed.length >= 3)
  assert.deepEqual([silver3!.status, silver3!.rowsIn], ['succeeded', 30])
  assert.deepEqual(silver3!.added, {'silver.images': 15, 'silver.captions': 15, 'silver.caption_sources': 15})
  assert.deepEqual([gold3!.rowsIn, gold3!.added], [15, {'gold.pairs': 15}])
  for (const [table, key, n] of [
    ['silver.images', 'sha256', 15],
    ['silver.captions', 'caption_id', 15],
    ['silver.caption_sources', 'bronze_caption_id', 15],
    ['gold.pairs', 'pair_id', 15],
    ['gold.excluded', 'pair_id', 0],
  ] as const) {
    assert.equal(await lakeCount(lake, `SELECT count(*) FROM ${table}`), n, table)
    assert.equal(await lakeCount(lake, `SELECT count(DISTINCT ${key}) FROM ${table}`), n, `${table}: no duplicate keys`)
    // Plain-folder readers (Spark, pandas) see the same rows: nothing old is left in the folder.
    const inFolder = parquetIn(layout.tableDir(table))
    const current = (await lakeRows(lake, `SELECT path FROM lake.files WHERE table_name = '${table}' AND removed_commit IS NULL`)).map((r) =>
      path.basename(String(r.path)),
    )
    assert.deepEqual(inFolder, current.sort(), `${table}: the table folder holds exactly the current files`)
  }
  assert.deepEqual(await lakeRows(lake, `SELECT DISTINCT normalized_width AS w FROM silver.images`), [{w: 48}])
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM silver.images WHERE run_id <> '${silver3!.runId}'`), 0)
  const retired = parquetIn(path.join(layout.retiredDir, 'silver', 'images'))
  assert.deepEqual(retired, oldFiles, 'the replaced files moved to _retired/')
  assert.equal(
    await lakeCount(lake, `SELECT count(*) FROM lake.files WHERE table_name = 'silver.images' AND removed_commit IS NOT NULL`),
    oldFiles.length,
  )
  const full = (await lakeRows(lake, `SELECT params FROM lake.runs WHERE run_id = '${silver3!.runId}'`))[0]!
  assert.equal(JSON.parse(full.params).full, true)
  assert.deepEqual(await pending(lake), {silver: 0, caption: 15, gold: 0})
})

test('status: the caption stage has the ok silver images no model has captioned yet; a model caption is one less, and a new pair for gold', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-etlinc-caption-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const layout = new LakeLayout(lake)
  await writeBatch(path.join(dir, 'in'), 0, 3)
  await ingest(layout, [path.join(dir, 'in')], {concurrency: 2})
  await runStages(layout, ['all'], {silver: {concurrency: 2}})
  assert.deepEqual(await pending(lake), {silver: 0, caption: 3, gold: 0})
  const [first] = await lakeRows(lake, `SELECT sha256 FROM silver.images WHERE status = 'ok' ORDER BY sha256 LIMIT 1`)
  await commitModelCaption(layout, String(first!.sha256), 'model-caption-1')
  assert.deepEqual(await pending(lake), {silver: 0, caption: 2, gold: 1})
})
