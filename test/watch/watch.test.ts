/**
 * watchFolders, in process, on real folders with a real lake: bursts, slow writers, captions
 * before and after their images, files added while stopped, files that vanish, temporary
 * names, stages after new data, and compaction of the small files streaming makes.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {appendFileSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {LakeLayout} from '../../src/lake/layout.js'
import {STAGES} from '../../src/lake/stages.js'
import type {StageSummary} from '../../src/lake/stageRun.js'
import {isTemporaryName, watchFolders, Watcher, WatchOptions} from '../../src/lake/watch.js'
import {assertLakeConsistent, imageBytes, lakeCount, lakeRows, tempDir} from '../helpers/lakeFixtures.js'
import {baseJpeg, EventLog, jpegVariant, moveAll, sha256, sleep, stageJpegs, until} from './helpers.js'

async function withWatcher(
  dirs: string[],
  lake: string,
  options: WatchOptions,
  work: (w: Watcher, log: EventLog) => Promise<void>,
): Promise<EventLog> {
  const log = new EventLog()
  const w = await watchFolders(new LakeLayout(lake), dirs, {...options, onEvent: log.onEvent})
  try {
    await work(w, log)
  } finally {
    await w.stop('test')
  }
  assert.equal(log.of('error').length, 0, `no error events: ${JSON.stringify(log.of('error'))}`)
  return log
}

test('burst: 2,000 files renamed in at once are all ingested, none twice, in batches of at most --batch-files', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-burst-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const names = await stageJpegs(path.join(dir, 'staging'), 2000)
    const lake = path.join(dir, 'lake')
    const log = await withWatcher([inbox], lake, {}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan', 10_000, 'the start rescan')
      const started = Date.now()
      moveAll(path.join(dir, 'staging'), inbox, names)
      await until(() => w.status().seen >= 2000, 'all 2,000 files are seen')
      await w.whenIdle()
      const status = w.status()
      assert.equal(status.ingested, 2000)
      assert.equal(status.pending, 0)
      assert.ok(Date.now() - started < 30_000)
    })
    const batches = log.of('batch_committed')
    assert.ok(batches.every((b) => b.files <= 500), `batch sizes ${batches.map((b) => b.files)}`)
    assert.equal(batches.reduce((n, b) => n + b.images.new, 0), 2000)
    const counts = await assertLakeConsistent(lake, assert)
    assert.equal(counts['bronze.images'], 2000)
    assert.equal(counts['bronze.sources'], 2000)
    assert.equal(counts['bronze.rejects'], 0)
    assert.equal(await lakeCount(lake, `SELECT count(*) FROM bronze.sources WHERE source <> 'watch' OR root <> '${inbox}'`), 0)
  } finally {
    cleanup()
  }
})

test('slow writer: a JPEG written in chunks over seconds is ingested once, complete, with no reject for its partial states', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-slow-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const full = await imageBytes(3, {width: 160, height: 120, format: 'jpeg'})
    const file = path.join(inbox, 'slow.jpg')
    await withWatcher([inbox], lake, {stabilityMs: 300, batchMs: 100}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan')
      const chunks = 6
      const size = Math.ceil(full.length / chunks)
      for (let i = 0; i < chunks; i++) {
        appendFileSync(file, full.subarray(i * size, (i + 1) * size))
        // Pauses longer than the settle time: the partial file looks stable and is read.
        await sleep(i % 2 === 0 ? 250 : 700)
      }
      await w.whenIdle()
      const log2 = log.of('batch_committed')
      assert.ok(log2.some((b) => b.deferred > 0), 'a partial state was read and put back, not rejected')
    })
    const images = await lakeRows(lake, 'SELECT sha256, CAST(bytes AS INTEGER) AS bytes FROM bronze.images')
    assert.deepEqual(images, [{sha256: sha256(full), bytes: full.length}])
    assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.rejects'), 0)
    assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.sources'), 1)
  } finally {
    cleanup()
  }
})

test('a sidecar that arrives after its upper-case-extension image (d.JPG, then d.txt) is linked, as ingest links it', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-upper-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const d = jpegVariant(await baseJpeg(), 7)
    await withWatcher([inbox], lake, {stabilityMs: 200, batchMs: 200}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan')
      writeFileSync(path.join(inbox, 'd.JPG'), d)
      await until(async () => (await lakeCount(lake, 'SELECT count(*) FROM bronze.images')) === 1, 'd.JPG is committed')
      writeFileSync(path.join(inbox, 'd.txt'), 'a caption for an upper-case name')
      await until(async () => (await lakeCount(lake, 'SELECT count(*) FROM bronze.captions')) === 1, 'd.txt is linked to d.JPG')
      assert.equal(w.status().waitingCaptions, 0)
    })
    assert.deepEqual(await lakeRows(lake, 'SELECT sha256, text FROM bronze.captions'), [{sha256: sha256(d), text: 'a caption for an upper-case name'}])
  } finally {
    cleanup()
  }
})

test('captions written before their image and after it are both linked; temporary names wait until renamed', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-captions-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const jpeg = await baseJpeg()
    const a = jpegVariant(jpeg, 1)
    const b = jpegVariant(jpeg, 2)
    const c = jpegVariant(jpeg, 3)
    await withWatcher([inbox], lake, {stabilityMs: 200, batchMs: 200}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan')
      writeFileSync(path.join(inbox, 'a.txt'), 'a caption that came first')
      await until(() => w.status().waitingCaptions === 1, 'a.txt waits for its image')
      assert.equal(w.status().waitingCaptions, 1)
      writeFileSync(path.join(inbox, 'a.jpg'), a)
      writeFileSync(path.join(inbox, 'b.jpg'), b)
      await until(() => w.status().seen >= 3, 'a.jpg and b.jpg are seen')
      await w.whenIdle()
      writeFileSync(path.join(inbox, 'b.txt'), 'a caption that came later')
      // A download in progress, then renamed into place.
      writeFileSync(path.join(inbox, 'c.jpg.crdownload'), c)
      writeFileSync(path.join(inbox, '.hidden.jpg'), jpegVariant(jpeg, 4))
      writeFileSync(path.join(inbox, 'backup.jpg~'), jpegVariant(jpeg, 5))
      await until(() => w.status().seen >= 4, 'b.txt is seen (temporary and hidden names are not)')
      await w.whenIdle()
      assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.images'), 2, 'temporary and hidden files are not ingested')
      renameSync(path.join(inbox, 'c.jpg.crdownload'), path.join(inbox, 'c.jpg'))
      await until(() => w.status().seen >= 5, 'c.jpg is seen once renamed')
      await w.whenIdle()
    })
    const captions = await lakeRows(lake, 'SELECT sha256, text FROM bronze.captions ORDER BY text')
    assert.deepEqual(captions, [
      {sha256: sha256(a), text: 'a caption that came first'},
      {sha256: sha256(b), text: 'a caption that came later'},
    ])
    assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.rejects'), 0)
    assert.deepEqual(
      (await lakeRows(lake, 'SELECT sha256 FROM bronze.images ORDER BY sha256')).map((r) => r.sha256),
      [sha256(a), sha256(b), sha256(c)].sort(),
    )
    for (const name of ['x.part', 'x.tmp', 'x~', '.x', 'x.crdownload', 'x.partial', 'x.download']) assert.ok(isTemporaryName(name), name)
    for (const name of ['x.jpg', 'x.txt', 'metadata.jsonl']) assert.ok(!isTemporaryName(name), name)
  } finally {
    cleanup()
  }
})

test('files added while watch was stopped are ingested at start; files deleted or moved before being read are recorded', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-stopped-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const first = await stageJpegs(inbox, 20, 0)
    await withWatcher([inbox], lake, {}, async (w) => {
      await until(() => w.status().seen >= 20, 'the 20 files are seen')
      await w.whenIdle()
    })
    assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.sources'), 20)
    // While stopped: 30 more, in a subfolder too.
    await stageJpegs(inbox, 15, 100)
    await stageJpegs(path.join(inbox, 'sub'), 15, 200)
    const jpeg = await baseJpeg()
    const log = await withWatcher([inbox], lake, {stabilityMs: 1500}, async (w, log) => {
      await until(() => w.status().seen >= 30, 'the 30 files added while stopped are seen')
      await w.whenIdle()
      assert.equal(log.of('rescan')[0].offered, 30, 'the start rescan offers only what the lake lacks')
      assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.sources'), 50)
      // Appears and vanishes within the settle time; another is moved to a new name.
      writeFileSync(path.join(inbox, 'gone.jpg'), jpegVariant(jpeg, 900))
      writeFileSync(path.join(inbox, 'moved.jpg'), jpegVariant(jpeg, 901))
      await until(() => w.status().seen >= 32, 'gone.jpg and moved.jpg are seen before they go')
      unlinkSync(path.join(inbox, 'gone.jpg'))
      renameSync(path.join(inbox, 'moved.jpg'), path.join(inbox, 'renamed.jpg'))
      await log.waitFor((e) => e.type === 'rejected' && e.path === path.join(inbox, 'moved.jpg'), 10_000, 'the moved file recorded')
      await until(() => w.status().seen >= 33, 'renamed.jpg is seen')
      await w.whenIdle()
    })
    assert.ok(log.of('rejected').some((e) => e.reason === 'file_vanished' && e.path === path.join(inbox, 'gone.jpg')))
    const rejects = await lakeRows(lake, `SELECT path, reason, message FROM bronze.rejects ORDER BY path`)
    assert.deepEqual(
      rejects.map((r) => [path.basename(r.path), r.reason]),
      [
        ['gone.jpg', 'file_vanished'],
        ['moved.jpg', 'file_vanished'],
      ],
    )
    assert.match(rejects[0].message, /^watch: .*gone\.jpg was deleted or moved away/)
    assert.equal(await lakeCount(lake, `SELECT count(*) FROM bronze.sources WHERE path LIKE '%renamed.jpg'`), 1)
    assert.equal(first.length, 20)
    const counts = await assertLakeConsistent(lake, assert)
    assert.equal(counts['bronze.images'], 51)
  } finally {
    cleanup()
  }
})

test('a file whose name is not UTF-8 (Latin-1) is recorded as name_not_utf8, whether there at start or added while watching', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-latin1-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const jpeg = await baseJpeg()
    const latin1 = (name: string) => Buffer.concat([Buffer.from(path.join(inbox, name)), Buffer.from([0xe9]), Buffer.from('.jpg')])
    writeFileSync(latin1('before-caf'), jpegVariant(jpeg, 1))
    writeFileSync(path.join(inbox, 'ok-1.jpg'), jpegVariant(jpeg, 2))
    const log = await withWatcher([inbox], lake, {}, async (w, log) => {
      await until(() => w.status().seen >= 1, 'ok-1.jpg is seen')
      await w.whenIdle()
      writeFileSync(latin1('during-caf'), jpegVariant(jpeg, 3))
      writeFileSync(path.join(inbox, 'ok-2.jpg'), jpegVariant(jpeg, 4))
      await until(() => w.status().seen >= 2, 'ok-2.jpg is seen')
      // chokidar cannot stat a name it only has as lossy text, so it drops the event; the
      // periodic rescan (walkInputs, which lists names as bytes) is what records the file.
      await w.rescan()
      await log.waitFor((e) => e.type === 'rejected' && String(e.path).includes('during-caf'), 20_000, 'the Latin-1 file added while watching is recorded')
      await w.whenIdle()
    })
    const rejects = await lakeRows(lake, `SELECT path, reason, message FROM bronze.rejects ORDER BY path`)
    assert.deepEqual(
      rejects.map((r) => [path.basename(r.path), r.reason]),
      [
        ['before-caf\uFFFD.jpg', 'name_not_utf8'],
        ['during-caf\uFFFD.jpg', 'name_not_utf8'],
      ],
    )
    assert.match(rejects[1].message, /the name of the file "during-caf\\xe9\.jpg" in .* is not valid UTF-8/)
    assert.ok(!log.of('rejected').some((e) => e.reason === 'file_vanished'))
    assert.equal(await lakeCount(lake, 'SELECT count(*) FROM bronze.sources'), 2)
  } finally {
    cleanup()
  }
})

test('--then runs registered stages after new data (debounced, one at a time); unknown stages fail at start naming the known ones', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-stages-')
  const calls: number[] = []
  let running = 0
  let overlapped = false
  STAGES['test-count'] = {
    description: 'counts how often it ran (test only)',
    run: async (): Promise<StageSummary> => {
      if (running > 0) overlapped = true
      running++
      calls.push(Date.now())
      await sleep(300)
      running--
      return {stage: 'test-count', runId: `test-${calls.length}`, status: 'succeeded', rowsIn: 0, added: {}, rejects: {}, commits: [], seconds: 0.3, params: {}}
    },
  }
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    await assert.rejects(
      watchFolders(new LakeLayout(lake), [inbox], {then: ['test-count,nope']}),
      (e: Error & {code?: string}) => e.code === 'WATCH_UNKNOWN_STAGE' && /^watch: unknown stage "nope".*expected one of .*silver.*test-count/.test(e.message),
    )
    const log = await withWatcher([inbox], lake, {then: ['test-count'], stageDebounceMs: 300, batchMs: 100, stabilityMs: 100}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan')
      for (let i = 0; i < 3; i++) {
        await stageJpegs(inbox, 2, i * 10)
        await sleep(150)
      }
      await log.waitFor((e) => e.type === 'stage_finished', 10_000, 'a stage run')
      await until(() => w.status().seen >= 6, 'the six files are seen')
      await w.whenIdle()
    })
    assert.ok(calls.length >= 1 && calls.length <= 2, `debounced: ${calls.length} runs for 3 quick batches`)
    assert.equal(overlapped, false)
    const finished = log.of('stage_finished')
    assert.equal(finished[0].stage, 'test-count')
    assert.equal(finished[0].status, 'succeeded')
    assert.equal(log.of('stage_started')[0].trigger, 'data')
    // --every: on a schedule, without new data.
    const scheduled = await withWatcher([inbox], lake, {then: ['test-count'], everyMs: 1000}, async (_w, log) => {
      await log.waitFor((e) => e.type === 'stage_finished', 10_000, 'a scheduled stage run')
    })
    assert.equal(scheduled.of('stage_started')[0].trigger, 'schedule')
  } finally {
    delete STAGES['test-count']
    cleanup()
  }
})

test('streaming commits are compacted past the threshold; rows and keys unchanged', async () => {
  const {dir, cleanup} = tempDir('mlcap-watch-compact-')
  try {
    const inbox = path.join(dir, 'inbox')
    mkdirSync(inbox)
    const lake = path.join(dir, 'lake')
    const log = await withWatcher([inbox], lake, {compactFiles: 4, batchFiles: 1, batchMs: 0, stabilityMs: 50}, async (w, log) => {
      await log.waitFor((e) => e.type === 'rescan')
      for (let i = 0; i < 6; i++) {
        await stageJpegs(inbox, 1, i)
        await until(() => w.status().seen >= i + 1, `file ${i + 1} is seen`)
        await w.whenIdle()
      }
    })
    const compacted = log.of('compacted').filter((e) => e.commitId !== null)
    assert.ok(compacted.some((e) => e.table === 'bronze.sources' && e.filesBefore >= 4 && e.filesAfter === 1), JSON.stringify(compacted))
    const counts = await assertLakeConsistent(lake, assert)
    assert.equal(counts['bronze.sources'], 6)
    const live = await lakeCount(lake, `SELECT count(*) FROM lake.files WHERE table_name = 'bronze.sources' AND removed_commit IS NULL`)
    assert.ok(live <= 3, `${live} live files after compaction`)
    rmSync(path.join(dir, 'staging'), {recursive: true, force: true})
  } finally {
    cleanup()
  }
})
