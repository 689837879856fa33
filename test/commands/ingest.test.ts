/**
 * `mlcap ingest` through the real CLI (child process): Ctrl-C (SIGINT) commits what is
 * complete, reports `interrupted` and exits 130, so `mlcap ingest … && mlcap etl run all`
 * stops there; the next ingest takes the rest, exactly once.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'

import {collect, lakeCount, parseJson, runCli, startCli, tempDir, waitForRun, writeImage} from '../helpers/lakeFixtures.js'

test('Ctrl-C: ingest commits what is complete, reports interrupted and exits 130; the next ingest takes the rest', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-ingestint-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const input = path.join(dir, 'in')
  const IMAGES = 300 // 150 commits of 2: long enough to be seen running on a loaded machine
  for (let i = 0; i < IMAGES; i++) await writeImage(path.join(input, `n${i}.png`), i, {width: 48, height: 40})

  const child = startCli(['ingest', input, '--batch-size', '2', '--lake', lake, '--json'])
  const done = collect(child, Date.now(), {timeoutMs: 120_000})
  await waitForRun(lake, 'ingest', 1, child)
  child.kill('SIGINT')
  const result = await done
  assert.equal(result.code, 130, result.stderr)
  const summary = parseJson(result)
  assert.equal(summary.status, 'interrupted')
  const visible = await lakeCount(lake, 'SELECT count(*) FROM bronze.images')
  assert.ok(visible > 0 && visible < IMAGES, `${visible} images committed`)
  assert.equal(summary.images.new, visible, 'everything complete was committed')
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM lake.runs WHERE run_id = '${summary.runId}' AND status = 'interrupted'`), 1)

  const rest = await runCli(['ingest', input, '--lake', lake, '--json'])
  assert.equal(rest.code, 0, rest.stderr)
  assert.equal(parseJson(rest).images.new, IMAGES - visible)
  assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.images'), IMAGES)
  assert.equal(await lakeCount(lake, 'SELECT count(DISTINCT sha256) FROM bronze.images'), IMAGES)
})
