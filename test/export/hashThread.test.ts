import {test} from 'node:test'
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {writeExport} from '../../src/export/exporter.js'
import {HashThread} from '../../src/export/hashThread.js'
import {verifyExport} from '../../src/export/manifest.js'
import {FileHashes, FileSink} from '../../src/export/writer.js'
import {makeSamples, sha256, streamOf, tempDir} from './fixtures.js'

test('a FileSink followed by the hash thread records the same size and SHA-256 as one hashing in-process', async (t) => {
  const dir = await tempDir(t)
  // chunks of many sizes, some past the sink's 1 MiB write batches, so the thread follows many ranges
  const chunks = Array.from({length: 40}, (_, i) => randomBytes((i * 7919) % 300_000 + 1))
  const thread = HashThread.start()
  t.after(() => thread.close())
  const threaded = new FileHashes(thread)
  const inProcess = new FileHashes()
  for (const [hashes, name] of [[threaded, 'a.bin'], [inProcess, 'b.bin']] as const) {
    const sink = await FileSink.create(join(dir, name), hashes)
    for (const chunk of chunks) await sink.write(chunk)
    await sink.close()
  }
  const content = await readFile(join(dir, 'a.bin'))
  assert.deepEqual(threaded.get(join(dir, 'a.bin')), {bytes: content.length, sha256: sha256(content)})
  assert.deepEqual(inProcess.get(join(dir, 'b.bin')), threaded.get(join(dir, 'a.bin')))
  assert.deepEqual(await thread.hashFile(join(dir, 'a.bin')), {bytes: content.length, sha256: sha256(content)})
})

test('the hash thread refuses a file whose size differs from what its writer reported, and a missing file', async (t) => {
  const dir = await tempDir(t)
  const thread = HashThread.start()
  t.after(() => thread.close())
  const path = join(dir, 'f.bin')
  await writeFile(path, Buffer.alloc(1000, 7))
  await assert.rejects(thread.follow(path).finish(999), {code: 'EXPORT_HASH_FAILED', message: /f\.bin: the file is longer than the 999 bytes its writer reported/})
  await assert.rejects(thread.follow(path).finish(1001), {code: 'EXPORT_HASH_FAILED', message: /f\.bin: the file ends at byte 1000, before byte 1001/})
  const missing = thread.follow(join(dir, 'missing.bin'))
  missing.advance(10)
  await assert.rejects(missing.finish(10), {code: 'EXPORT_HASH_FAILED', message: /missing\.bin: ENOENT/})
  await assert.rejects(thread.hashFile(join(dir, 'missing.bin')), {code: 'EXPORT_HASH_FAILED'})
  // the thread still works after those failures
  assert.equal((await thread.follow(path).finish(1000)).sha256, sha256(Buffer.alloc(1000, 7)))
})

test('an image whose source file (imageFile) no longer matches its sha256 fails the export, which leaves nothing behind', async (t) => {
  const samples = await makeSamples()
  const root = await tempDir(t)
  const files = await Promise.all(samples.map(async (sample, i) => {
    const file = join(root, `object-${i}`)
    await writeFile(file, sample.image)
    return {...sample, imageFile: file}
  }))
  // every file intact: the export goes through the thread's checks and verifies
  const good = await writeExport(streamOf(files), {format: 'webdataset', outDir: join(root, 'good'), captions: 'first', manifestInfo: {}})
  assert.equal(good.counts.samples, samples.length)
  assert.deepEqual(await verifyExport(join(root, 'good')), {ok: true, problems: []})

  const flipped = Buffer.from(samples[5].image)
  flipped[flipped.length >> 1] ^= 0xff
  await writeFile(files[5].imageFile, flipped)
  await assert.rejects(writeExport(streamOf(files), {format: 'hf', outDir: join(root, 'bad'), captions: 'first', manifestInfo: {}}), {
    code: 'EXPORT_HASH_MISMATCH', message: new RegExp(`^export: sample #5 \\(key "${samples[5].key}"\\) image hashes to [0-9a-f]{64} but the sample says sha256 ${samples[5].sha256}`),
  })
  await writeFile(files[5].imageFile, samples[5].image.subarray(1))
  await assert.rejects(writeExport(streamOf(files), {format: 'webdataset', outDir: join(root, 'bad'), captions: 'first', manifestInfo: {}}), {
    code: 'EXPORT_HASH_MISMATCH', message: /^export: sample #5 .* image file .*object-5 has \d+ bytes now but \d+ were exported/,
  })
  assert.deepEqual((await readdir(root)).filter((name) => name.startsWith('bad')), [])
})
