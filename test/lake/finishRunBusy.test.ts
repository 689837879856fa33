/**
 * A run whose work is committed but whose end cannot be recorded in lake.runs (another process
 * holds the catalog past the lock timeout) still succeeds: its summary carries a warning, the
 * commits stand, and the run, left 'running', shows as interrupted once its process is gone.
 * (It used to fail with LAKE_BUSY, exit 3, though its data was committed.)
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import path from 'node:path'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {StageRun} from '../../src/lake/stageRun.js'
import {releaseHolder, startCatalogHolder, waitForHolderSync} from '../helpers/catalogHolder.js'
import {collect, lakeCount, lakeRows, parseJson, REPO_ROOT, runCli, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

const WORKER = path.join(REPO_ROOT, 'test/helpers/finishBusyWorker.ts')

const warning = (stage: string, runId: string, lake: string) =>
  new RegExp(
    `^${stage}: the work is committed, but recording the end of run ${runId} in lake.runs failed \\(lake: the catalog ${path.join(lake, 'catalog.duckdb')} stayed locked by another process \\(PID \\d+\\) for 500 ms\\)\\. ` +
      'Nothing needs redoing: lake.runs shows the run as running until this process exits, then as interrupted, with its commits kept$',
  )

test('ingest that cannot record the end of its run still succeeds, with a warning; the run then shows as interrupted, its commit kept', {timeout: 120_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-finish-busy-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const known = path.join(dir, 'known')
  const fresh = path.join(dir, 'new')
  await writeImageFolder(known, 1)
  await ingest(new LakeLayout(lake), [known])
  await writeImageFolder(fresh, 1, {firstSeed: 50})
  const markers = path.join(dir, 'markers')
  mkdirSync(markers)

  // The worker commits the new image, then another process holds the catalog until it returns.
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, lake, markers, fresh, known], {cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe']})
  const result = await collect(child, Date.now(), {timeoutMs: 90_000})
  assert.equal(result.code, 0, result.stdout + result.stderr)
  const summary = JSON.parse(result.stdout)
  assert.equal(summary.status, 'succeeded')
  assert.deepEqual([summary.images.new, summary.images.known, summary.commits.length], [1, 1, 1])
  assert.equal(summary.warnings.length, 1)
  assert.match(summary.warnings[0], warning('ingest', summary.runId, lake))

  // The commit stands; the run row says running, as the worker left it.
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM bronze.images`), 2)
  const [run] = await lakeRows(lake, `SELECT status, commits, pid FROM lake.runs WHERE run_id = '${summary.runId}'`)
  assert.deepEqual([run.status, run.commits.map(Number), run.pid], ['running', summary.commits, child.pid])

  // Its process is gone: status and history show it as interrupted.
  const status = await runCli(['status', '--lake', lake, '--json'])
  assert.equal(status.code, 0, status.stderr)
  assert.deepEqual(parseJson(status).interrupted.map((r: {runId: string}) => r.runId), [summary.runId])
  const history = await runCli(['etl', 'history', '--stage', 'ingest', '--lake', lake, '--json'])
  assert.equal(history.code, 0, history.stderr)
  const shown = parseJson(history).runs[0]
  assert.deepEqual([shown.runId, shown.status, shown.commits], [summary.runId, 'interrupted', summary.commits])
})

test('an etl stage that cannot record the end of its run returns succeeded with a warning; its commit stands', {timeout: 60_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-finish-busy-stage-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await writeImageFolder(path.join(dir, 'in'), 1)
  await ingest(layout, [path.join(dir, 'in')])

  // Every stage (silver, caption, gold) ends through StageRun.finish.
  const stage = await StageRun.begin(layout, 'silver', {}, {lockTimeoutMs: 500})
  stage.batch.add('bronze.images', {sha256: 'key-000001', bytes: 1, format: 'png', run_id: stage.runId})
  await stage.commit()
  const marker = path.join(dir, 'held')
  const holder = startCatalogHolder(layout.root, marker)
  t.after(() => releaseHolder(holder))
  waitForHolderSync(marker)
  const summary = await stage.finish(1)
  await releaseHolder(holder)

  assert.equal(summary.status, 'succeeded')
  assert.deepEqual(summary.added, {'bronze.images': 1})
  assert.equal(summary.warnings?.length, 1)
  assert.match(summary.warnings![0]!, warning('silver', summary.runId, layout.root))
  assert.equal(await lakeCount(layout.root, `SELECT count(*) FROM bronze.images WHERE sha256 = 'key-000001'`), 1)
  const [run] = await lakeRows(layout.root, `SELECT status, commits FROM lake.runs WHERE run_id = '${summary.runId}'`)
  assert.deepEqual([run.status, run.commits.map(Number)], ['running', summary.commits])
})
