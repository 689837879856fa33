/**
 * `mlcap etl run` and `mlcap etl history` through the real CLI (child processes): the --json
 * contracts, exit codes and messages, no progress bar off a terminal, a lake never created
 * by a stage, Ctrl-C (SIGINT) committing what is complete — or, for --full, nothing — and
 * a run killed outright shown as interrupted without the readers writing to the lake.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {blobImage, collect, lakeCount, lakeRows, parseJson, runCli, startCli, tempDir, waitForRun, writeImage} from '../helpers/lakeFixtures.js'

async function captionedFolder(dir: string, first: number, count: number): Promise<void> {
  mkdirSync(dir, {recursive: true})
  for (let i = first; i < first + count; i++) {
    writeFileSync(path.join(dir, `p${i}.png`), await blobImage(i, {width: 96, height: 72}))
    writeFileSync(path.join(dir, `p${i}.txt`), `blobs of colour number ${i}`)
  }
}

const SUMMARY_KEYS = ['added', 'commits', 'params', 'rejects', 'rowsIn', 'runId', 'seconds', 'stage', 'status']
const RUN_KEYS = ['commits', 'endedAt', 'error', 'params', 'rejects', 'rowsIn', 'rowsOut', 'runId', 'seconds', 'stage', 'startedAt', 'status']

test('etl run / etl history: --json contracts, errors and exit codes, no progress bar off a terminal', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-etlcli-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  await captionedFolder(path.join(dir, 'in1'), 0, 6)
  await ingest(new LakeLayout(lake), [path.join(dir, 'in1')], {concurrency: 2})

  // etl run silver gold --json: {stages: [summary, summary]}, shape pinned.
  const run = await runCli(['etl', 'run', 'silver', 'gold', '--lake', lake, '--json', '--split', '80/10/10'])
  assert.equal(run.code, 0, run.stderr)
  assert.equal(run.stderr, '', 'nothing on stderr with --json')
  const out = parseJson<{stages: Array<Record<string, any>>}>(run)
  assert.deepEqual(Object.keys(out), ['stages'])
  assert.deepEqual(out.stages.map((s) => s.stage), ['silver', 'gold'])
  for (const s of out.stages) {
    assert.deepEqual(Object.keys(s).sort(), SUMMARY_KEYS)
    assert.equal(s.status, 'succeeded')
    assert.match(s.runId, new RegExp(`^${s.stage}-\\d{8}T\\d{6}-[0-9a-f]{6}$`))
    assert.equal(typeof s.seconds, 'number')
    assert.ok(s.commits.length >= 1 && s.commits.every(Number.isInteger))
  }
  const [silver, gold] = out.stages as [Record<string, any>, Record<string, any>]
  assert.equal(silver.rowsIn, 12)
  assert.deepEqual(silver.added, {'silver.images': 6, 'silver.captions': 6, 'silver.caption_sources': 6})
  assert.deepEqual(silver.rejects, {})
  assert.deepEqual(Object.keys(silver.params).sort(), ['captions', 'cleaning_version', 'full', 'normalize', 'perceptual_hash_version'])
  assert.deepEqual(silver.params.captions, {lowercase: false, maxLength: 300}, 'every caption setting is recorded')
  assert.deepEqual(silver.params.normalize, {maxSide: 512, format: 'jpeg', quality: 90, background: '#ffffff', minSide: 32, maxAspectRatio: 6, maxPixels: 100_000_000})
  assert.deepEqual([gold.rowsIn, gold.added], [6, {'gold.pairs': 6}])
  assert.deepEqual(Object.keys(gold.params).sort(), ['dedupe', 'filters', 'full', 'input_commit', 'near_duplicate_distance', 'ratios', 'split_seed'])
  assert.deepEqual(Object.keys(gold.params.ratios).sort(), ['test', 'train', 'val'])
  for (const [k, v] of Object.entries({train: 0.8, val: 0.1, test: 0.1})) assert.ok(Math.abs(gold.params.ratios[k] - v) < 1e-9, `ratio ${k}`)
  assert.equal(gold.params.input_commit, Math.max(...silver.commits))

  // Unknown stage: exit 2, the stages listed; nothing recorded.
  const runsBefore = await lakeCount(lake, `SELECT count(*) FROM lake.runs`)
  const bogus = await runCli(['etl', 'run', 'bogus', '--lake', lake])
  assert.equal(bogus.code, 2, bogus.stderr)
  assert.match(bogus.stderr, /etl: unknown stage "bogus"; expected one of (\w+, )*silver, (\w+, )*gold, (\w+, )*all/)
  assert.doesNotMatch(bogus.stderr, /\n\s+at /, 'no stack trace')
  const bogusJson = await runCli(['etl', 'run', 'silver', 'bogus', '--lake', lake, '--json'])
  assert.equal(bogusJson.code, 2)
  assert.equal(parseJson(bogusJson).error.code, 'UNKNOWN_STAGE')

  // Bad numbers: exit 2 naming the flag, before any run starts.
  const aspect = await runCli(['etl', 'run', 'silver', '--max-aspect', 'wide', '--lake', lake])
  assert.equal(aspect.code, 2, aspect.stderr)
  assert.match(aspect.stderr, /Expected number ≥ 1 for --max-aspect but received "wide"/)
  const sharp = await runCli(['etl', 'run', 'gold', '--min-sharpness', 'x', '--lake', lake, '--json'])
  assert.equal(sharp.code, 2)
  assert.match(parseJson(sharp).error.message, /--min-sharpness/)
  const split = await runCli(['etl', 'run', 'gold', '--split', '90/5', '--lake', lake])
  assert.equal(split.code, 2, split.stderr)
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM lake.runs`), runsBefore, 'no run recorded for a usage error')

  // A stage never creates a lake: a mistyped --lake is LAKE_NOT_FOUND and leaves no folder behind.
  const typo = path.join(dir, 'no-such-lake')
  const missing = await runCli(['etl', 'run', 'all', '--lake', typo, '--json'])
  assert.equal(missing.code, 1, missing.stdout + missing.stderr)
  assert.equal(parseJson(missing).error.code, 'LAKE_NOT_FOUND')
  assert.equal(existsSync(typo), false, 'etl created a lake at a mistyped path')

  // Off a terminal (stderr is a pipe here): summaries on stdout, no progress bar on stderr.
  await captionedFolder(path.join(dir, 'in2'), 6, 2)
  await ingest(new LakeLayout(lake), [path.join(dir, 'in2')], {concurrency: 2})
  const plain = await runCli(['etl', 'run', 'all', '--lake', lake])
  assert.equal(plain.code, 0, plain.stderr)
  assert.equal(plain.stderr, '', 'no progress bar, no notes when stderr is not a terminal')
  const lines = plain.stdout.trim().split('\n')
  assert.equal(lines.length, 2, plain.stdout)
  assert.match(lines[0]!, /^silver: 4 items in \d+\.\d s → (silver\.\w+ \+2(, |(?= \()))+ \(commit \d+\)$/)
  for (const table of ['silver.images', 'silver.captions', 'silver.caption_sources']) assert.ok(lines[0]!.includes(`${table} +2`), lines[0])
  assert.match(lines[1]!, /^gold: 2 items in \d+\.\d s → gold\.pairs \+2 \(commit \d+\)$/)
  const again = await runCli(['etl', 'run', 'all', '--lake', lake])
  assert.deepEqual(again.stdout.trim().split('\n'), ['silver: nothing new to process.', 'gold: nothing new to process.'])

  // etl history --json: newest first, shape pinned, --stage and --limit.
  const history = await runCli(['etl', 'history', '--lake', lake, '--json'])
  assert.equal(history.code, 0, history.stderr)
  const runs = parseJson<{runs: Array<Record<string, any>>}>(history).runs
  assert.deepEqual(
    runs.map((r) => [r.stage, r.status, r.rowsIn]),
    [
      ['gold', 'succeeded', 0],
      ['silver', 'succeeded', 0],
      ['gold', 'succeeded', 2],
      ['silver', 'succeeded', 4],
      ['ingest', 'succeeded', runs[4]!.rowsIn],
      ['gold', 'succeeded', 6],
      ['silver', 'succeeded', 12],
      ['ingest', 'succeeded', runs[7]!.rowsIn],
    ],
  )
  for (const r of runs) assert.deepEqual(Object.keys(r).sort(), RUN_KEYS)
  assert.equal(runs[6]!.runId, silver.runId)
  assert.deepEqual([runs[6]!.rowsOut, runs[6]!.commits, runs[6]!.params], [18, silver.commits, silver.params])
  const goldOnly = parseJson<{runs: Array<Record<string, any>>}>(await runCli(['etl', 'history', '--stage', 'gold', '--limit', '2', '--lake', lake, '--json'])).runs
  assert.deepEqual(goldOnly.map((r) => r.runId), [runs[0]!.runId, runs[2]!.runId])
  // A stage no run can have is a usage error naming the stages, not an empty table.
  const badStage = await runCli(['etl', 'history', '--stage', 'bogus', '--lake', lake])
  assert.equal(badStage.code, 2, badStage.stderr)
  assert.equal(badStage.stdout, '')
  assert.match(badStage.stderr.replace(/\s*›\s*/g, ' '), /Expected --stage=bogus to be one of: ingest, watch, silver, caption, gold, compact/)
  const badStageJson = await runCli(['etl', 'history', '--stage', 'bogus', '--lake', lake, '--json'])
  assert.equal(badStageJson.code, 2)
  assert.deepEqual(parseJson(badStageJson).error, {
    code: 'INVALID_ARGUMENTS',
    message: 'Expected --stage=bogus to be one of: ingest, watch, silver, caption, gold, compact',
    hint: 'mlcap etl history --help lists the flags and arguments',
    exitCode: 2,
  })
  const table = await runCli(['etl', 'history', '--lake', lake, '--limit', '3'])
  assert.equal(table.code, 0, table.stderr)
  assert.match(table.stdout, /run_id\s+stage\s+status/)
  assert.ok(table.stdout.includes(runs[0]!.runId))
})

test('Ctrl-C: etl run commits what is complete and reports interrupted; an interrupted --full leaves the old tables', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-etlint-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const input = path.join(dir, 'in')
  const IMAGES = 240 // ~120 commits of 2: a run long enough to be seen running on a loaded machine, then interrupted
  for (let i = 0; i < IMAGES; i++) await writeImage(path.join(input, `n${i}.png`), i, {width: 64, height: 48})
  await ingest(new LakeLayout(lake), [input], {concurrency: 2})

  const child = startCli(['etl', 'run', 'silver', '--batch-size', '2', '--lake', lake, '--json'])
  const done = collect(child, Date.now(), {timeoutMs: 120_000})
  await waitForRun(lake, 'silver', 1, child)
  child.kill('SIGINT')
  const result = await done
  assert.equal(result.code, 130, `interrupted work exits 130 so a chained command stops: ${result.stderr}`)
  const summary = parseJson(result).stages[0]
  assert.equal(summary.status, 'interrupted')
  const visible = await lakeCount(lake, `SELECT count(*) FROM silver.images`)
  assert.ok(visible > 0 && visible < IMAGES, `${visible} images committed`)
  assert.equal(summary.added['silver.images'], visible, 'everything complete was committed')
  assert.equal(summary.rowsIn, visible, 'rows_in counts what was processed, not what was planned')
  const recorded = (await lakeRows(lake, `SELECT status, rows_in FROM lake.runs WHERE run_id = '${summary.runId}'`))[0]!
  assert.deepEqual([recorded.status, Number(recorded.rows_in)], ['interrupted', visible])

  // The next run finishes the rest.
  const rest = await runCli(['etl', 'run', 'silver', '--lake', lake, '--json'])
  assert.equal(rest.code, 0, rest.stderr)
  assert.equal(parseJson(rest).stages[0].added['silver.images'], IMAGES - visible)
  const before = await lakeRows(lake, `SELECT sha256, run_id, commit_id FROM silver.images ORDER BY sha256`)

  // An interrupted --full commits nothing: the lake keeps the rows it had.
  const full = startCli(['etl', 'run', 'silver', '--full', '--batch-size', '2', '--lake', lake, '--json'])
  const fullDone = collect(full, Date.now(), {timeoutMs: 120_000})
  await waitForRun(lake, 'silver', 0, full)
  full.kill('SIGINT')
  const fullResult = await fullDone
  const fullSummary = parseJson(fullResult).stages[0]
  assert.equal(fullResult.code, fullSummary.status === 'interrupted' ? 130 : 0, fullResult.stderr)
  if (fullSummary.status === 'interrupted') {
    assert.deepEqual([fullSummary.added, fullSummary.commits], [{}, []])
    assert.deepEqual(await lakeRows(lake, `SELECT sha256, run_id, commit_id FROM silver.images ORDER BY sha256`), before)
  } else {
    // The rebuild finished before the signal arrived: then it replaced everything at once.
    t.diagnostic('the --full run finished before SIGINT')
    assert.equal(await lakeCount(lake, `SELECT count(DISTINCT run_id) FROM silver.images`), 1)
  }
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM silver.images`), IMAGES)
})

test('a run whose process was killed (SIGKILL) shows as interrupted in status and etl history, which leave lake.runs as it is', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-etlkill-')
  t.after(cleanup)
  const lake = path.join(dir, 'lake')
  const input = path.join(dir, 'in')
  for (let i = 0; i < 240; i++) await writeImage(path.join(input, `k${i}.png`), i, {width: 64, height: 48})
  await ingest(new LakeLayout(lake), [input], {concurrency: 2})

  // SIGKILL (or a second Ctrl-C) leaves no chance to finish the run: lake.runs keeps saying running.
  const child = startCli(['etl', 'run', 'silver', '--batch-size', '2', '--lake', lake, '--json'])
  const done = collect(child, Date.now(), {timeoutMs: 120_000})
  await waitForRun(lake, 'silver', 1, child)
  child.kill('SIGKILL')
  assert.equal((await done).signal, 'SIGKILL')
  const killedRun = `SELECT * FROM lake.runs WHERE stage = 'silver' ORDER BY started_at DESC LIMIT 1`
  const recorded = (await lakeRows(lake, killedRun))[0]!
  assert.deepEqual([recorded.status, recorded.pid, recorded.host, recorded.ended_at], ['running', child.pid, os.hostname(), null])
  const runId = String(recorded.run_id)
  const gone = `process ${child.pid} ended without finishing the run (killed or crashed); committed batches were kept`

  const status = await runCli(['status', '--lake', lake, '--json'])
  assert.equal(status.code, 0, status.stderr)
  const s = parseJson(status)
  assert.deepEqual(s.running, [], 'a run whose process is gone is not running')
  assert.deepEqual(s.interrupted, [{runId, stage: 'silver', startedAt: s.interrupted[0]?.startedAt, pid: child.pid}])
  const statusText = await runCli(['status', '--lake', lake])
  assert.equal(statusText.code, 0, statusText.stderr)
  assert.doesNotMatch(statusText.stdout, /^Running$/m)
  assert.ok(statusText.stdout.includes(`Interrupted (process gone)\n  ${runId} (pid ${child.pid}) since `), statusText.stdout)

  const history = await runCli(['etl', 'history', '--lake', lake, '--json'])
  assert.equal(history.code, 0, history.stderr)
  const shown = parseJson(history).runs[0]
  assert.deepEqual([shown.runId, shown.status, shown.endedAt, shown.error], [runId, 'interrupted', null, gone])
  // Piped (not a terminal), the table cuts nothing: the run id can be copied into a query.
  const table = await runCli(['etl', 'history', '--lake', lake, '--limit', '1'])
  assert.equal(table.code, 0, table.stderr)
  const row = table.stdout.split('\n')[2]!
  assert.ok(row.startsWith(`${runId}  silver  interrupted  `) && row.endsWith(gone), table.stdout)
  assert.ok(!table.stdout.includes('…'), table.stdout)

  // The readers only showed it: the catalog row is exactly as the killed process left it.
  assert.deepEqual((await lakeRows(lake, killedRun))[0], recorded)

  // Another host's run cannot be checked from here: it stays running, as writers leave it.
  const setHost = async (host: string) => {
    const db = await DuckDBInstance.create(path.join(lake, 'catalog.duckdb'))
    const c = await db.connect()
    try {
      await c.run(`UPDATE runs SET host = $host WHERE run_id = $id`, {host, id: runId})
    } finally {
      c.closeSync()
      db.closeSync()
    }
  }
  await setHost('some-other-host')
  const foreign = parseJson(await runCli(['status', '--lake', lake, '--json']))
  assert.deepEqual([foreign.running.map((r: {runId: string}) => r.runId), foreign.interrupted], [[runId], []])
  assert.equal(parseJson(await runCli(['etl', 'history', '--lake', lake, '--json'])).runs[0].status, 'running')
  await setHost(os.hostname())

  // The next writer records what the readers showed.
  const next = await runCli(['etl', 'run', 'silver', '--lake', lake, '--json'])
  assert.equal(next.code, 0, next.stderr)
  const marked = (await lakeRows(lake, `SELECT status, error, ended_at FROM lake.runs WHERE run_id = '${runId}'`))[0]!
  assert.deepEqual([marked.status, marked.error], ['interrupted', gone])
  assert.notEqual(marked.ended_at, null)
  const after = parseJson(await runCli(['etl', 'history', '--lake', lake, '--stage', 'silver', '--json'])).runs
  assert.deepEqual(after.map((r: Record<string, unknown>) => [r.runId, r.status]).slice(1), [[runId, 'interrupted']])
  assert.equal(after[1].error, gone)
  assert.deepEqual(parseJson(await runCli(['status', '--lake', lake, '--json'])).interrupted, [])
})
