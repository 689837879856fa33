/**
 * exportGold end to end on a real lake (ingest → silver → gold): every format read back by a
 * reader independent of the writers (hyparquet, system tar, JSON.parse, DuckDB's CSV
 * reader), round-tripped against gold.pairs and the object store; selection flags;
 * determinism; tampering; abort; hostile --where.
 */
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'
import {asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects} from 'hyparquet'

import {EXPORT_FORMATS, type ExportFormat} from '../../src/export/exporter.js'
import {verifyExport} from '../../src/export/manifest.js'
import {exportGold, type ExportGoldOptions} from '../../src/lake/exportGold.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {buildGoldLake, goldImages, type GoldImage} from '../helpers/goldLake.js'
import {imageBytes, lakeCount, listFiles} from '../helpers/lakeFixtures.js'
import {ingest} from '../../src/lake/ingest.js'
import {runSilver} from '../../src/lake/silver.js'
import {runGold} from '../../src/lake/gold.js'
import {compressors, readTree, tar} from './fixtures.js'

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')
const FORMATS = Object.keys(EXPORT_FORMATS) as ExportFormat[]

let root: string
let layout: LakeLayout
let lake: string
let gold: Map<string, GoldImage>
let commit: number
let twoCaptionImages: number
let outCount = 0

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'mlcap-export-gold-'))
  ;({lake, layout, twoCaptionImages} = await buildGoldLake(root))
  gold = await goldImages(lake)
  commit = await lakeCount(lake, 'SELECT max(commit_id) FROM lake.commits')
})

after(() => rmSync(root, {recursive: true, force: true}))

function out(): string {
  return path.join(root, 'exports', `out-${++outCount}`)
}

function run(format: ExportFormat, options: Partial<ExportGoldOptions> = {}) {
  return exportGold(layout, {format, outDir: out(), ...options})
}

/** One exported image as read back from the files. */
interface ReadSample {
  split: string
  /** `sha256` as the export states it. */
  sha256: string
  image: Buffer
  captions: Array<{id: string; text: string}>
}

async function readParquet(file: string): Promise<Record<string, any>[]> {
  const buffer = await asyncBufferFromFile(file)
  return parquetReadObjects({file: buffer, metadata: await parquetMetadataAsync(buffer), compressors, utf8: false})
}

async function readCsv(file: string): Promise<Record<string, any>[]> {
  const instance = await DuckDBInstance.create(':memory:')
  const connection = await instance.connect()
  try {
    const result = await connection.runAndReadAll(`SELECT * FROM read_csv($1, header = true, all_varchar = true, quote = '"', escape = '"')`, [file])
    return result.getRowObjectsJson() as Record<string, any>[]
  } finally {
    connection.closeSync()
    instance.closeSync()
  }
}

function add(map: Map<string, ReadSample>, key: string, sample: ReadSample): void {
  const existing = map.get(key)
  if (existing) existing.captions.push(...sample.captions)
  else map.set(key, sample)
}

/** Reads an export back into key → sample without any of mlcap's code. */
async function readBack(format: ExportFormat, dir: string): Promise<Map<string, ReadSample>> {
  const samples = new Map<string, ReadSample>()
  const splits = ['train', 'val', 'test']
  switch (format) {
    case 'hf': {
      for (const name of (readdirSync(dir, {recursive: true}) as string[]).filter((file) => file.endsWith('.parquet')).sort()) {
        const split = /^(train|val|test)\/\1-\d{5}-of-\d{5}\.parquet$/.exec(name)![1]
        for (const row of await readParquet(path.join(dir, name))) {
          assert.equal(row.split, split)
          const captions = 'captions' in row
            ? (row.captions as string[]).map((text, i) => ({id: row.caption_ids[i] as string, text}))
            : [{id: row.caption_id as string, text: row.text as string}]
          add(samples, row.key, {split, sha256: row.sha256, image: Buffer.from(row.image.bytes), captions})
        }
      }
      break
    }
    case 'webdataset': {
      for (const split of splits.filter((s) => readdirSync(dir).includes(s))) {
        for (const shard of readdirSync(path.join(dir, split)).sort()) {
          const listing = tar(['-tf', path.join(dir, split, shard)]).trim().split('\n')
          const target = mkdtempSync(path.join(root, 'untar-'))
          tar(['-xf', path.join(dir, split, shard), '-C', target])
          for (const json of listing.filter((name) => name.endsWith('.json'))) {
            const key = json.slice(0, -'.json'.length)
            const meta = JSON.parse(readFileSync(path.join(target, json), 'utf8'))
            const imageName = listing.find((name) => name.startsWith(`${key}.`) && !name.endsWith('.json') && !name.endsWith('.txt'))!
            const txt = readFileSync(path.join(target, `${key}.txt`), 'utf8')
            assert.equal(txt, meta.captions.map((c: {text: string}) => c.text).join('\n'))
            add(samples, key, {split, sha256: meta.sha256, image: readFileSync(path.join(target, imageName)), captions: meta.captions.map((c: any) => ({id: c.id, text: c.text}))})
          }
        }
      }
      break
    }
    case 'coco': {
      for (const split of splits.filter((s) => readdirSync(dir).includes(s))) {
        const coco = JSON.parse(readFileSync(path.join(dir, split, 'captions.json'), 'utf8'))
        assert.deepEqual(Object.keys(coco), ['info', 'images', 'annotations'])
        for (const image of coco.images) {
          assert.deepEqual(Object.keys(image).sort(), ['file_name', 'height', 'id', 'sha256', 'width'])
          const annotations = coco.annotations.filter((a: any) => a.image_id === image.id)
          add(samples, image.file_name.replace(/\.\w+$/, ''), {
            split, sha256: image.sha256, image: readFileSync(path.join(dir, split, 'images', image.file_name)),
            captions: annotations.map((a: any) => ({id: a.caption_id, text: a.caption})),
          })
        }
        assert.ok(coco.annotations.every((a: any) => coco.images.some((i: any) => i.id === a.image_id)), 'every annotation names an image')
      }
      break
    }
    case 'imagefolder': {
      for (const split of splits.filter((s) => readdirSync(dir).includes(s))) {
        for (const line of readFileSync(path.join(dir, split, 'metadata.jsonl'), 'utf8').trim().split('\n')) {
          const row = JSON.parse(line)
          const captions = 'captions' in row ? row.captions.map((text: string, i: number) => ({id: row.caption_ids[i], text})) : [{id: row.caption_id, text: row.text}]
          add(samples, row.key, {split, sha256: row.sha256, image: readFileSync(path.join(dir, split, row.file_name)), captions})
        }
      }
      break
    }
    case 'jsonl':
    case 'csv': {
      const rows = format === 'jsonl'
        ? readFileSync(path.join(dir, 'captions.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line))
        : await readCsv(path.join(dir, 'captions.csv'))
      for (const row of rows) {
        add(samples, row.key, {split: row.split, sha256: row.sha256, image: readFileSync(path.join(dir, row.image)), captions: [{id: row.caption_id, text: row.caption}]})
      }
      break
    }
  }
  return samples
}

/** The exported samples are exactly `expected` gold images: keys, splits, captions, image bytes = the objects. */
function assertRoundTrip(read: Map<string, ReadSample>, expected: GoldImage[], options: {captions: 'all' | 'first'; original?: boolean; layout?: LakeLayout}): void {
  assert.deepEqual([...read.keys()].sort(), expected.map((image) => image.sha256.slice(0, 16)).sort(), 'one sample per gold image, keyed by its SHA-256')
  for (const image of expected) {
    const sample = read.get(image.sha256.slice(0, 16))!
    assert.equal(sample.split, image.split)
    const objectSha = options.original ? image.sha256 : image.imageSha256
    assert.equal(sha256(sample.image), objectSha, 'image bytes are the object gold names')
    assert.equal(sample.sha256, objectSha)
    assert.ok(sample.image.equals(readFileSync((options.layout ?? layout).objectPath(objectSha))))
    const captions = image.captions.map(({id, text}) => ({id, text}))
    assert.deepEqual(sample.captions, options.captions === 'all' ? captions : captions.slice(0, 1))
  }
}

for (const format of FORMATS) {
  test(`${format}: an export of all of gold reads back (independent reader) as exactly the gold pairs and objects`, async () => {
    const summary = await run(format, {shardSize: 7})
    assert.equal(summary.commitId, commit)
    assert.equal(summary.counts.samples, gold.size)
    assert.equal(summary.counts.captions, [...gold.values()].reduce((n, image) => n + image.captions.length, 0))
    assertRoundTrip(await readBack(format, summary.outDir), [...gold.values()], {captions: 'all'})
    assert.deepEqual(await verifyExport(summary.outDir), {ok: true, problems: []})
    const manifest = JSON.parse(readFileSync(path.join(summary.outDir, 'manifest.json'), 'utf8'))
    assert.deepEqual(manifest.created_from, {images: 'normalized', lake_commit: commit, limit: null, split: 'all', table: 'gold.pairs', where: null})
    assert.equal(manifest.options.captions, 'all')
  })
}

test('the lake has what these tests need: three splits, images with two captions', () => {
  const splits = new Set([...gold.values()].map((image) => image.split))
  assert.deepEqual([...splits].sort(), ['test', 'train', 'val'])
  assert.equal([...gold.values()].filter((image) => image.captions.length === 2).length, twoCaptionImages)
  assert.ok(twoCaptionImages >= 5)
})

test('two exports of the same commit and arguments are byte-identical (hf, webdataset, coco)', async () => {
  for (const format of ['hf', 'webdataset', 'coco'] as const) {
    const options = {where: "caption_source = 'human'", captions: 'first' as const, shardSize: 4}
    const a = await run(format, options)
    const b = await run(format, options)
    const [ta, tb] = [await readTree(a.outDir), await readTree(b.outDir)]
    assert.deepEqual([...ta.keys()], [...tb.keys()], format)
    for (const [file, bytes] of ta) assert.ok(bytes.equals(tb.get(file)!), `${format}: ${file} differs`)
    assert.ok(ta.size > 3)
  }
})

test('--split, --where, --limit, --captions first and --original select and shape what is exported', async () => {
  const all = [...gold.values()]
  // --split
  const val = await run('jsonl', {split: 'val'})
  assertRoundTrip(await readBack('jsonl', val.outDir), all.filter((image) => image.split === 'val'), {captions: 'all'})
  assert.deepEqual(JSON.parse(readFileSync(path.join(val.outDir, 'manifest.json'), 'utf8')).created_from.split, 'val')

  // --where selects pairs: an image keeps only the captions of its selected pairs
  const where = "caption NOT LIKE 'another caption%' AND width >= 96"
  const human = await run('imagefolder', {where, captions: 'all'})
  const expected = all.map((image) => ({...image, captions: image.captions.filter((c) => !c.text.startsWith('another caption'))}))
    .filter((image) => image.captions.length > 0 && image.width >= 96)
  assertRoundTrip(await readBack('imagefolder', human.outDir), expected, {captions: 'all'})
  assert.equal(JSON.parse(readFileSync(path.join(human.outDir, 'manifest.json'), 'utf8')).created_from.where, where)

  // --limit: the first N images by SHA-256, across splits, written split by split
  const limited = await run('csv', {limit: 7})
  const firstSeven = all.map((image) => image.sha256).sort().slice(0, 7)
  assertRoundTrip(await readBack('csv', limited.outDir), all.filter((image) => firstSeven.includes(image.sha256)), {captions: 'all'})
  assert.equal(limited.counts.samples, 7)

  // --captions first: the first caption by caption_id
  const first = await run('hf', {captions: 'first'})
  assertRoundTrip(await readBack('hf', first.outDir), all, {captions: 'first'})
  assert.equal(first.counts.captions, gold.size)

  // --original: the ingested bytes and their own dimensions and extension
  const original = await run('coco', {original: true, split: 'train'})
  assertRoundTrip(await readBack('coco', original.outDir), all.filter((image) => image.split === 'train'), {captions: 'all', original: true})
  const coco = JSON.parse(readFileSync(path.join(original.outDir, 'train', 'captions.json'), 'utf8'))
  assert.ok(coco.images.every((image: any) => image.file_name.endsWith('.jpg')))
})

test('verify finds a changed byte, a missing and an extra file in an exported folder', async () => {
  const summary = await run('webdataset', {shardSize: 5})
  const shard = path.join(summary.outDir, 'train', '00000.tar')
  const bytes = readFileSync(shard)
  bytes[600] ^= 1
  writeFileSync(shard, bytes)
  rmSync(path.join(summary.outDir, 'val', '00000.tar'))
  writeFileSync(path.join(summary.outDir, 'train', 'extra.tar'), 'x')
  const result = await verifyExport(summary.outDir)
  assert.equal(result.ok, false)
  assert.deepEqual(result.problems, [
    {path: 'train/00000.tar', problem: 'sha256'},
    {path: 'train/extra.tar', problem: 'unexpected'},
    {path: 'val/00000.tar', problem: 'missing'},
  ])
})

test('an aborted export leaves nothing behind (no output folder, no staging folder); progress counts to the total', async () => {
  const parent = path.join(root, 'aborted')
  const controller = new AbortController()
  const seen: Array<[number, number]> = []
  await assert.rejects(
    exportGold(layout, {
      format: 'webdataset', outDir: path.join(parent, 'wds'), shardSize: 3, signal: controller.signal,
      onProgress: (done, total) => {
        seen.push([done, total])
        if (done === 6) controller.abort(new Error('Ctrl-C'))
      },
    }),
    {code: 'EXPORT_ABORTED', message: /^export: aborted after 6 samples; nothing was written to /},
  )
  assert.deepEqual(seen, Array.from({length: 6}, (_, i) => [i + 1, gold.size]))
  assert.deepEqual(readdirSync(parent), [])
})

test('a hostile or malformed --where is refused before anything is written, and the lake is unchanged', async () => {
  const before = fingerprint()
  const target = path.join(root, 'hostile')
  const cases: Array<[string, RegExp]> = [
    [`1=1; COPY (SELECT 1) TO '${path.join(lake, 'bronze', 'x.csv')}'`, /does not parse as a predicate|not a single predicate/],
    [`read_text('/etc/passwd') IS NOT NULL`, /cannot be used|failed/],
    [`length((SELECT content FROM read_text('/etc/passwd'))) > 0`, /contains a subquery/],
    [`sha256 IN (SELECT sha256 FROM bronze.images)`, /contains a subquery/],
    [`1=1) GROUP BY ALL HAVING (1=1`, /not a single predicate/],
    [`1=1) UNION ALL SELECT * FROM gold.pairs WHERE (1=1`, /not a single predicate/],
    [`true) LIMIT (1`, /not a single predicate/],
    [`true /* ) `, /does not parse as a predicate/],
    [`no_such_column = 1`, /cannot be used: .*no_such_column/],
    [`  `, /--where is empty/],
  ]
  for (const [where, message] of cases) {
    await assert.rejects(exportGold(layout, {format: 'jsonl', outDir: target, where}).then(() => assert.fail(`accepted: ${where}`)), (error: any) => {
      assert.equal(error.code, 'PREDICATE_INVALID', `${where}: ${error.message}`)
      assert.equal(error.exitCode, 2)
      assert.match(error.message, /^export: --where /)
      assert.match(error.message, message, where)
      assert.match(error.hint, /columns of gold\.pairs: pair_id, sha256/)
      return true
    })
  }
  // getenv / file access at run time is refused by the sandbox even when it binds
  await assert.rejects(exportGold(layout, {format: 'jsonl', outDir: target, where: `caption = getenv('HOME')`}), {code: 'PREDICATE_INVALID'})
  assert.deepEqual(fingerprint(), before)
  assert.equal(readdirSync(root).includes('hostile'), false)
})

test('--out inside the lake is refused (gc would delete it; plain-folder readers would read it as table data)', async () => {
  const layout = new LakeLayout(lake)
  for (const outDir of [layout.tableDir('gold.pairs') + '/export', lake, path.join(lake, 'exports')]) {
    await assert.rejects(exportGold(layout, {format: 'hf', outDir}), (error: any) => {
      assert.equal(error.code, 'EXPORT_OUT_IN_LAKE')
      assert.match(error.message, /is inside the lake .*; expected a folder outside it/)
      return true
    })
  }
  assert.ok(!existsSync(path.join(lake, 'exports')))
})

test('an empty selection names the filter that selected nothing', async () => {
  await assert.rejects(run('hf', {where: `words > 1000`}), {
    code: 'EXPORT_EMPTY', message: new RegExp(`^export: --where "words > 1000" selected none of the \\d+ pairs in gold.pairs at lake commit ${commit}`),
  })
  await assert.rejects(run('hf', {where: `split = 'train'`, split: 'val'}), {
    code: 'EXPORT_EMPTY', message: /^export: --split val selected no image of the \d+ pairs that --where selected/,
  })
  const empty = new LakeLayout(path.join(root, 'empty-lake'))
  const {ensureCatalog} = await import('../../src/lake/catalog.js')
  await ensureCatalog(empty)
  await assert.rejects(exportGold(empty, {format: 'hf', outDir: out()}), (error: any) => {
    assert.equal(error.code, 'EXPORT_EMPTY')
    assert.match(error.message, /^export: gold\.pairs is empty at lake commit 0/)
    assert.match(error.hint, /mlcap etl run silver gold/)
    return true
  })
  await assert.rejects(run('hf', {limit: 0}), {code: 'INVALID_PARAMETER', message: /^export: Expected a positive integer for limit but received 0/})
  await assert.rejects(run('hf', {split: 'dev' as 'val'}), {message: /^export: Expected one of train, val, test, all for split but received "dev"/})
})

function fingerprint(): Record<string, string> {
  const prints: Record<string, string> = {}
  for (const rel of listFiles(lake)) {
    if (rel === 'catalog.duckdb' || rel.endsWith('.wal') || rel.startsWith('_staging/')) continue
    prints[rel] = sha256(readFileSync(path.join(lake, rel)))
  }
  return prints
}

test('--original: objects larger than the read buffer (a 3 MB PNG) and smaller ones after it are exported byte for byte', async () => {
  const dir = path.join(root, 'large-originals')
  const photos = path.join(dir, 'photos')
  mkdirSync(photos, {recursive: true})
  const large = await imageBytes(7, {width: 1100, height: 1000, format: 'png'}) // noise: ~3.3 MB, more than the first read buffer (1 MiB)
  assert.ok(large.length > 2 * (1 << 20), `the large PNG is ${large.length} bytes`)
  writeFileSync(path.join(photos, 'large.png'), large)
  writeFileSync(path.join(photos, 'large.txt'), 'a large noisy picture')
  for (const i of [1, 2, 3]) {
    writeFileSync(path.join(photos, `small-${i}.jpg`), await imageBytes(100 + i, {width: 96, height: 80, format: 'jpeg'}))
    writeFileSync(path.join(photos, `small-${i}.txt`), `a small picture number ${i}`)
  }
  const small = new LakeLayout(path.join(dir, 'lake'))
  await ingest(small, [photos])
  await runSilver(small)
  await runGold(small)
  const images = await goldImages(small.root)
  assert.equal(images.size, 4)
  for (const format of ['jsonl', 'hf'] as const) {
    const summary = await exportGold(small, {format, outDir: path.join(dir, format), original: true, captions: 'first'})
    assertRoundTrip(await readBack(format, summary.outDir), [...images.values()], {captions: 'first', original: true, layout: small})
    assert.deepEqual(await verifyExport(summary.outDir), {ok: true, problems: []})
  }
})
