import {test} from 'node:test'
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {EXPORT_FORMATS, writeExport, type ExportFormat} from '../../src/export/exporter.js'
import {HashThread} from '../../src/export/hashThread.js'
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
  // the thread still works after those failures
  assert.equal((await thread.follow(path).finish(1000)).sha256, sha256(Buffer.alloc(1000, 7)))
})

test('chunks written with a check are verified on the thread as written, across its 1 MiB reads; the first mismatch fails close', async (t) => {
  const dir = await tempDir(t)
  const thread = HashThread.start()
  t.after(() => thread.close())
  // checked chunks of 0.3-2.5 MiB between unchecked ones: ranges start and end inside, and span, the thread's reads
  const chunks = Array.from({length: 12}, (_, i) => randomBytes(i % 2 === 0 ? 300_000 + i * 200_000 : 1 + i * 37))
  const write = async (name: string, hashes: FileHashes, corrupt: number[]) => {
    const sink = await FileSink.create(join(dir, name), hashes)
    for (const [i, chunk] of chunks.entries()) {
      const check = i % 2 === 0 ? {sha256: corrupt.includes(i) ? sha256('something else') : sha256(chunk), label: `chunk ${i}`} : undefined
      await sink.write(chunk, check)
    }
    return sink.close()
  }
  const threaded = new FileHashes(thread)
  await write('good.bin', threaded, [])
  assert.equal(threaded.get(join(dir, 'good.bin'))?.sha256, sha256(Buffer.concat(chunks)))
  await assert.rejects(write('bad.bin', threaded, [6, 10]), {
    code: 'EXPORT_HASH_MISMATCH', message: `export: chunk 6 hashes to ${sha256(chunks[6])} but the sample says sha256 ${sha256('something else')}`,
  })
  assert.equal(threaded.get(join(dir, 'bad.bin')), undefined, 'a file that failed its checks is not recorded')
  // without a thread the sink checks in-process, at the write
  await assert.rejects(write('bad-in-process.bin', new FileHashes(), [4]), {code: 'EXPORT_HASH_MISMATCH', message: /^export: chunk 4 hashes to/})
})

for (const format of Object.keys(EXPORT_FORMATS) as ExportFormat[]) {
  test(`${format}: with verifyImages, an image that does not hash to its sample's sha256 fails the export, which leaves nothing behind`, async (t) => {
    const samples = await makeSamples()
    const root = await tempDir(t)
    const flipped = Buffer.from(samples[5].image)
    flipped[flipped.length >> 1] ^= 0xff
    const stream = samples.map((sample, i) => (i === 5 ? {...sample, image: flipped} : sample))
    await assert.rejects(writeExport(streamOf(stream), {format, outDir: join(root, 'out'), captions: 'all', shardSize: 4, manifestInfo: {}, verifyImages: true}), {
      code: 'EXPORT_HASH_MISMATCH', message: `export: the image of sample ${JSON.stringify(samples[5].key)} hashes to ${sha256(flipped)} but the sample says sha256 ${samples[5].sha256}`,
    })
    assert.deepEqual(await readdir(root), [])
  })
}
