import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, readdir, readFile, rename, writeFile} from 'node:fs/promises'
import {hostname} from 'node:os'
import {spawn} from 'node:child_process'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {EXPORT_FORMATS, writeExport, type ExportFormat} from '../../src/export/exporter.js'
import {verifyExport} from '../../src/export/manifest.js'
import {makeSamples, readTree, sha256, streamOf, tempDir} from './fixtures.js'

const FORMATS = Object.keys(EXPORT_FORMATS) as ExportFormat[]

for (const format of FORMATS) {
  test(`${format}: two exports of the same input are byte-identical, and the manifest lists every file`, async (t) => {
    const samples = await makeSamples()
    const root = await tempDir(t)
    const options = {format, captions: 'all' as const, shardSize: 6, manifestInfo: {lake_commit: 42, where: 'split = train', zeta: [1, 2], alpha: {b: 1, a: 2}}}
    const progress: number[] = []
    const first = await writeExport(streamOf(samples), {...options, outDir: join(root, 'a'), onProgress: (n) => progress.push(n)})
    await new Promise((resolve) => setTimeout(resolve, 1010 - (Date.now() % 1000))) // the second run starts in another second: no clock may show
    await writeExport(streamOf(samples), {...options, outDir: join(root, 'b', 'nested')})
    assert.deepEqual(progress, samples.map((_, i) => i + 1))

    const [a, b] = [await readTree(join(root, 'a')), await readTree(join(root, 'b', 'nested'))]
    assert.deepEqual([...a.keys()], [...b.keys()])
    for (const [path, bytes] of a) assert.ok(bytes.equals(b.get(path)!), `${path} differs between runs`)

    const manifest = JSON.parse(a.get('manifest.json')!.toString('utf8'))
    assert.deepEqual(Object.keys(manifest), ['mlcap_version', 'format', 'options', 'created_from', 'counts', 'files'])
    assert.equal(manifest.format, format)
    assert.deepEqual(manifest.created_from, {alpha: {a: 2, b: 1}, lake_commit: 42, where: 'split = train', zeta: [1, 2]})
    assert.equal(manifest.options.captions, 'all')
    const captions = samples.reduce((total, sample) => total + sample.captions.length, 0)
    assert.deepEqual(manifest.counts, {
      samples: samples.length, captions,
      splits: Object.fromEntries((['test', 'train', 'val'] as const).map((split) => {
        const inSplit = samples.filter((sample) => sample.split === split)
        return [split, {samples: inSplit.length, captions: inSplit.reduce((total, sample) => total + sample.captions.length, 0)}]
      })),
    })
    assert.deepEqual(first.counts, manifest.counts)
    const listed = manifest.files.map((file: {path: string}) => file.path)
    assert.deepEqual(listed, [...a.keys()].filter((path) => path !== 'manifest.json'), 'every file but the manifest, sorted')
    for (const file of manifest.files) {
      assert.equal(file.bytes, a.get(file.path)!.length)
      assert.equal(file.sha256, sha256(a.get(file.path)!))
    }
    assert.equal(first.files, a.size)
    assert.doesNotMatch(a.get('manifest.json')!.toString('utf8'), /\d{4}-\d\d-\d\dT\d\d:|"(created_at|timestamp|time|date)"/)
    assert.deepEqual(await verifyExport(join(root, 'a')), {ok: true, problems: []})
    assert.deepEqual((await readdir(root)).sort(), ['a', 'b'], 'no staging folders left')
  })

  test(`${format}: aborting mid-export leaves no outDir and no staging folder`, async (t) => {
    const samples = await makeSamples()
    const root = await tempDir(t)
    const controller = new AbortController()
    const stream = streamOf(samples, (index) => index === 12 && controller.abort(new Error('user pressed ^C')))
    await assert.rejects(writeExport(stream, {format, outDir: join(root, 'out'), captions: 'first', shardSize: 5, manifestInfo: {}, signal: controller.signal}), {
      code: 'EXPORT_ABORTED', message: /^export: aborted after 12 samples; nothing was written to /,
    })
    assert.deepEqual(await readdir(root), [])
  })
}

test('verifyExport reports a modified, a resized, a missing and an unexpected file, and a missing manifest', async (t) => {
  const samples = await makeSamples()
  const out = join(await tempDir(t), 'x')
  await writeExport(streamOf(samples), {format: 'imagefolder', outDir: out, captions: 'first', manifestInfo: {}})
  const [a, b, c] = samples.filter((sample) => sample.split === 'train').map((sample) => `train/${sample.key}.${sample.imageExt}`)
  const bytes = await readFile(join(out, a))
  bytes[bytes.length - 1] ^= 0xff // same size, different content
  await writeFile(join(out, a), bytes)
  await writeFile(join(out, b), Buffer.concat([await readFile(join(out, b)), Buffer.from('x')]))
  await (await import('node:fs/promises')).rm(join(out, c))
  await mkdir(join(out, 'extra'))
  await writeFile(join(out, 'extra', 'notes.txt'), 'hello')
  const result = await verifyExport(out)
  assert.equal(result.ok, false)
  assert.deepEqual(result.problems, [
    {path: 'extra/', problem: 'unexpected'},
    {path: 'extra/notes.txt', problem: 'unexpected'},
    ...[{path: a, problem: 'sha256'}, {path: b, problem: 'size'}, {path: c, problem: 'missing'}].sort((x, y) => (x.path < y.path ? -1 : 1)),
  ])
  await (await import('node:fs/promises')).rm(join(out, 'manifest.json'))
  assert.deepEqual(await verifyExport(out), {ok: false, problems: [{path: 'manifest.json', problem: 'missing'}]})
})

test('an existing export is kept unless overwrite; overwrite replaces it only once the new one is complete', async (t) => {
  const samples = await makeSamples()
  const root = await tempDir(t)
  const out = join(root, 'out')
  await writeExport(streamOf(samples.slice(0, 5)), {format: 'jsonl', outDir: out, captions: 'first', manifestInfo: {run: 1}})
  const before = await readFile(join(out, 'manifest.json'), 'utf8')
  await assert.rejects(writeExport(streamOf(samples), {format: 'jsonl', outDir: out, captions: 'first', manifestInfo: {run: 2}}), {
    code: 'EXPORT_EXISTS', message: /^export: .*out already holds an export; expected an empty or new folder/,
  })
  // a failing overwrite leaves the old export as it was
  const failing = (async function* () {
    yield* streamOf(samples.slice(0, 3))
    throw new Error('gold read failed')
  })()
  await assert.rejects(writeExport(failing, {format: 'jsonl', outDir: out, captions: 'first', manifestInfo: {run: 2}, overwrite: true}), /gold read failed/)
  assert.equal(await readFile(join(out, 'manifest.json'), 'utf8'), before)
  assert.deepEqual(await verifyExport(out), {ok: true, problems: []})

  const summary = await writeExport(streamOf(samples), {format: 'jsonl', outDir: out, captions: 'first', manifestInfo: {run: 2}, overwrite: true})
  assert.equal(summary.replaced, true)
  assert.equal(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')).created_from.run, 2)
  assert.deepEqual(await verifyExport(out), {ok: true, problems: []})
  assert.deepEqual(await readdir(root), ['out'], 'no staging or old folders left')
})

test('exports to one folder at the same time: each publishes or fails with EXPORT_CONFLICT, and one complete export is left, nothing beside it', {timeout: 120_000}, async (t) => {
  const samples = (await makeSamples()).slice(0, 4)
  const root = await tempDir(t)
  const out = join(root, 'out')
  const racers = 4
  let conflicts = 0
  // Races are timing: rounds of `racers` exports whose sample streams end together, so they
  // publish at about the same moment, until a few lost (every round must end well either way).
  for (let round = 0; round < 40 && conflicts < 3; round++) {
    let arrived = 0
    let release!: () => void
    const together = new Promise<void>((resolve) => (release = resolve))
    async function* stream() {
      yield* samples
      if (++arrived === racers) release()
      await together
    }
    const results = await Promise.allSettled(
      Array.from({length: racers}, (_, n) =>
        writeExport(stream(), {format: 'jsonl', outDir: out, captions: 'first', manifestInfo: {round, n}, overwrite: true}),
      ),
    )
    const published = new Set<number>()
    for (const [n, result] of results.entries()) {
      if (result.status === 'fulfilled') {
        published.add(n)
        continue
      }
      const error = result.reason as {code?: string; message: string; hint?: string}
      assert.equal(error.code, 'EXPORT_CONFLICT', `round ${round}, export ${n}: ${error.message}`)
      assert.equal(error.message, `export: another export replaced ${out} at the same time as this one; this one was not published, and the folder is left to the other`)
      assert.match(error.hint ?? '', /mlcap export verify .*run this export again/)
      conflicts++
    }
    assert.ok(published.size >= 1, `round ${round}: no export was published`)
    assert.deepEqual(await verifyExport(out), {ok: true, problems: []}, `round ${round}`)
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'))
    assert.equal(manifest.created_from.round, round)
    assert.ok(published.has(manifest.created_from.n), `round ${round}: the folder holds export ${manifest.created_from.n}, which failed`)
    assert.deepEqual(await readdir(root), ['out'], `round ${round}: no staging or old folders left`)
  }
  assert.ok(conflicts >= 1, 'no round had an export lose the race: the test did not test it')
})

test('a non-empty folder that is not an export is never replaced, even with overwrite; an empty one is used', async (t) => {
  const samples = await makeSamples()
  const root = await tempDir(t)
  await mkdir(join(root, 'precious'))
  await writeFile(join(root, 'precious', 'thesis.tex'), 'do not delete')
  await assert.rejects(writeExport(streamOf(samples), {format: 'csv', outDir: join(root, 'precious'), captions: 'first', manifestInfo: {}, overwrite: true}), {
    code: 'EXPORT_OUTDIR_NOT_EMPTY', message: /^export: .*precious exists and is not an empty folder or an earlier mlcap export/,
  })
  assert.equal(await readFile(join(root, 'precious', 'thesis.tex'), 'utf8'), 'do not delete')
  await mkdir(join(root, 'empty'))
  const summary = await writeExport(streamOf(samples), {format: 'csv', outDir: join(root, 'empty'), captions: 'first', manifestInfo: {}})
  assert.equal(summary.replaced, false)
  assert.deepEqual(await verifyExport(join(root, 'empty')), {ok: true, problems: []})
})

test('bad samples and options are refused with messages naming the value, and leave nothing behind', async (t) => {
  const samples = await makeSamples()
  const root = await tempDir(t)
  const outDir = join(root, 'out')
  const base = {format: 'hf' as const, outDir, captions: 'first' as const, manifestInfo: {}, verifyImages: true}
  const corrupt = {...samples[3], image: Buffer.concat([samples[3].image, Buffer.from([0])])}
  await assert.rejects(writeExport(streamOf([samples[0], corrupt]), base), {
    code: 'EXPORT_HASH_MISMATCH', message: new RegExp(`^export: the image of sample "${samples[3].key}" hashes to [0-9a-f]{64} but the sample says sha256 ${samples[3].sha256}`),
  })
  await assert.rejects(writeExport(streamOf([samples[0], samples[1], samples[0]]), base), {
    code: 'INVALID_PARAMETER', message: new RegExp(`^export: Expected a key not used by an earlier sample for sample #2 key but received "${samples[0].key}"`),
  })
  await assert.rejects(writeExport(streamOf([{...samples[0], key: '../escape'}]), base), {
    code: 'INVALID_PARAMETER', message: /^export: Expected 1-128 characters of \[A-Za-z0-9_-\].* for sample #0 \(key "..\/escape"\) key but received "..\/escape"/,
  })
  await assert.rejects(writeExport(streamOf([{...samples[0], captions: []}]), base), {message: /^export: Expected a non-empty array of captions for sample #0 .* captions/})
  await assert.rejects(writeExport(streamOf([{...samples[0], split: 'dev' as 'val'}]), base), {message: /^export: Expected one of train, val, test for sample #0 .* split but received "dev"/})
  await assert.rejects(writeExport(streamOf([]), base), {code: 'EXPORT_EMPTY', message: /^export: the sample stream for out was empty; expected at least one sample/})
  await assert.rejects(writeExport(streamOf(samples), {...base, format: 'tfrecord' as 'hf'}), {message: /^export: Expected one of hf, imagefolder, webdataset, coco, jsonl, csv for format but received "tfrecord"/})
  await assert.rejects(writeExport(streamOf(samples), {...base, shardSize: 0}), {message: /^export: Expected a positive integer for shardSize but received 0/})
  await assert.rejects(writeExport(streamOf(samples), {...base, manifestInfo: {n: 10n}}), {message: /^export: Expected JSON values only .* for manifestInfo/})
  assert.deepEqual(await readdir(root), [])
})

test('a SIGKILLed export leaves no output folder, only its staging folder, which the next export to that folder removes', async (t) => {
  const root = await tempDir(t)
  const outDir = join(root, 'out')
  const worker = fileURLToPath(new URL('../helpers/slowExportWorker.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', worker, outDir, 'webdataset'], {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // killed by progress, not by the clock: once its staging folder holds a closed shard and more
  const staging = async () => (await readdir(root)).filter((name) => name.startsWith('out.partial-'))
  for (let waited = 0; ; waited += 50) {
    const [folder] = await staging()
    if (folder && (await readdir(join(root, folder, 'train')).catch(() => [])).length >= 2) break
    assert.ok(waited < 60_000 && child.exitCode === null, `the export child wrote no shards in time or exited: ${stderr}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  child.kill('SIGKILL')
  await exited
  const left = await staging()
  assert.equal(left.length, 1)
  assert.match(left[0], /^out\.partial-[0-9a-f]{8}-\d+-[0-9a-f]{12}$/)
  assert.equal(left[0].split('-')[2], String(child.pid))
  assert.deepEqual((await readdir(root)).filter((name) => !name.startsWith('out.partial-')), [], 'no output folder that could look complete')

  // a staging folder of a live export (this process) and one of another host are kept
  const live = `out.partial-${left[0].split('-')[1]}-${process.pid}-${'a'.repeat(12)}`
  const otherHost = `out.partial-00000000-${child.pid}-${'b'.repeat(12)}`
  await mkdir(join(root, live))
  await mkdir(join(root, otherHost))
  const samples = await makeSamples()
  await writeExport(streamOf(samples), {format: 'webdataset', outDir, captions: 'first', manifestInfo: {}})
  assert.deepEqual((await readdir(root)).sort(), ['out', live, otherHost].sort())
  assert.deepEqual(await verifyExport(outDir), {ok: true, problems: []})
})

test('an --overwrite killed between moving the old export aside and moving the new one in: the next export to that folder puts the old one back', async (t) => {
  const root = await tempDir(t)
  const outDir = join(root, 'out')
  const samples = await makeSamples()
  const options = {format: 'webdataset' as const, outDir, captions: 'first' as const, manifestInfo: {}}
  await writeExport(streamOf(samples), options)
  const before = await readFile(join(outDir, 'manifest.json'))
  // The state a SIGKILL leaves there: the old export renamed aside by a process that is gone.
  const gone = spawn(process.execPath, ['-e', '0'])
  await new Promise((resolve) => gone.once('exit', resolve))
  const hostTag = createHash('sha256').update(hostname()).digest('hex').slice(0, 8) // as exporter.ts tags this host
  const aside = join(root, `out.old-${hostTag}-${gone.pid}-${'c'.repeat(12)}`)
  await rename(outDir, aside)

  // Without --overwrite the export it finds back is refused, as any existing export is.
  await assert.rejects(writeExport(streamOf(samples), {...options, overwrite: false}), {code: 'EXPORT_EXISTS'})
  assert.deepEqual(await readdir(root), ['out'], 'the old export is back in place, nothing left beside it')
  assert.ok((await readFile(join(outDir, 'manifest.json'))).equals(before))
  assert.deepEqual(await verifyExport(outDir), {ok: true, problems: []})
})

test('an abort from a timer or signal handler (as Ctrl-C is) stops an export at its next turn of the event loop (every 8 samples), though its writes are synchronous', async (t) => {
  const root = await tempDir(t)
  const samples = (await makeSamples()).flatMap((sample, i) => [0, 1].map((copy) => ({...sample, key: `${sample.key}c${copy}`, split: 'train' as const, attributes: {i}})))
  for (const format of ['webdataset', 'hf'] as const) {
    const controller = new AbortController()
    await assert.rejects(
      // a plain array: the stream itself never gives the event loop a turn
      writeExport(samples, {
        format, outDir: join(root, format), captions: 'first', manifestInfo: {}, signal: controller.signal,
        // setImmediate runs at the export's next turn of the event loop, as a signal handler would
        // (a 1 ms timer may not be due yet at the next turn, which made this test depend on speed)
        onProgress: (done) => {
          if (done === 2) setImmediate(() => controller.abort(new Error('SIGINT')))
        },
      }),
      (error: {code?: string; message: string}) => {
        assert.equal(error.code, 'EXPORT_ABORTED')
        const done = Number(/aborted after (\d+) samples/.exec(error.message)![1])
        assert.ok(done > 2 && done <= 10, `${format}: stopped after ${done} of ${samples.length} samples, the abort came after 2`)
        return true
      },
    )
  }
  assert.deepEqual(await readdir(root), [])
})

test('every format: a sample stream that reuses one buffer for every image (as exportGold does) exports each image intact, across hf row groups', async (t) => {
  const distinct = await makeSamples()
  // 230 samples cycling through 30 distinct images: more than two hf row groups of 100 rows
  const samples = Array.from({length: 230}, (_, i) => ({...distinct[i % distinct.length], key: `reused-${String(i).padStart(4, '0')}`}))
  const shared = Buffer.alloc(Math.max(...distinct.map((sample) => sample.image.length)))
  async function* reusing() {
    for (const sample of samples) {
      const image = shared.subarray(0, sample.image.length)
      sample.image.copy(image)
      yield {...sample, image}
      shared.fill(0) // what the next read would do to memory a writer kept
    }
  }
  const root = await tempDir(t)
  for (const format of FORMATS) {
    const out = join(root, format)
    const summary = await writeExport(reusing(), {format, outDir: out, captions: 'first', manifestInfo: {lake_commit: 1}})
    assert.equal(summary.counts.samples, samples.length, format)
    assert.deepEqual(await verifyExport(out), {ok: true, problems: []}, format)
  }
  const {asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects} = await import('hyparquet')
  const byKey = new Map(samples.map((sample) => [sample.key, sample]))
  let read = 0
  for (const name of (await readdir(join(root, 'hf'), {recursive: true})).filter((file) => file.endsWith('.parquet'))) {
    const file = await asyncBufferFromFile(join(root, 'hf', name))
    const rows = await parquetReadObjects({file, metadata: await parquetMetadataAsync(file), utf8: false})
    for (const row of rows) {
      const key = typeof row.key === 'string' ? row.key : new TextDecoder().decode(row.key as Uint8Array)
      assert.equal(sha256((row.image as {bytes: Uint8Array}).bytes), byKey.get(key)!.sha256, `hf image of ${key}`)
      read++
    }
  }
  assert.equal(read, samples.length)
})
