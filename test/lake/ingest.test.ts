/**
 * Ingest into bronze: every caption convention lands with its raw text exactly as found,
 * an image is stored once however many places it is found, re-ingesting adds nothing and
 * says so, and EXIF fields are recorded (GPS only as a flag unless asked for).
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {copyFileSync, existsSync, mkdirSync, realpathSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import sharp from 'sharp'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {assertLakeConsistent, lakeRows, parseJson, runCli, tempDir, writeImage} from '../helpers/lakeFixtures.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

test('every caption convention lands in bronze.captions with the raw text exactly as found', async () => {
  const {dir, cleanup} = tempDir('mlcap-ingest-')
  try {
    const root = path.join(dir, 'photos')
    const a = await writeImage(path.join(root, 'side', 'a.jpg'), 1, {format: 'jpeg'})
    const sidecarText = '  A sidecar caption\twith a tab, trailing spaces   \nand a second line\n'
    writeFileSync(path.join(root, 'side', 'a.txt'), sidecarText)
    const a2 = await writeImage(path.join(root, 'side', 'a2.png'), 2)
    writeFileSync(path.join(root, 'side', 'a2.png.txt'), 'ünïcödé 🙂 caption')

    const b = await writeImage(path.join(root, 'hf', 'b.png'), 3)
    const c = await writeImage(path.join(root, 'hf', 'sub', 'c.webp'), 4, {format: 'webp'})
    writeFileSync(
      path.join(root, 'hf', 'metadata.jsonl'),
      [
        JSON.stringify({file_name: 'b.png', text: ' b text, untrimmed ', score: 0.5, tags: ['x', 'y'], nested: {k: null}}),
        JSON.stringify({file_name: 'sub/c.webp', caption: 'c caption'}),
        JSON.stringify({file_name: 'b.png', text: ['first of two', 'second of two']}),
      ].join('\n') + '\n',
    )
    const d = await writeImage(path.join(root, 'csv', 'd.png'), 5)
    writeFileSync(path.join(root, 'csv', 'metadata.csv'), 'file_name,text,license\r\nd.png,"d text, with ""quotes""",cc-by\r\n')
    const e = await writeImage(path.join(root, 'coco', 'images', 'e.png'), 6)
    writeFileSync(
      path.join(root, 'coco', 'captions_train.json'),
      JSON.stringify({
        info: {year: 2024},
        images: [{id: 7, file_name: 'images/e.png', width: 16, height: 16}],
        annotations: [
          {id: 70, image_id: 7, caption: 'e caption one'},
          {id: 71, image_id: 7, caption: 'E caption two '},
        ],
      }),
    )

    const summary = await ingest(new LakeLayout(path.join(dir, 'lake')), [root])
    assert.equal(summary.images.new, 6)
    assert.equal(summary.rejects.total, 0, JSON.stringify(summary.rejects))
    assert.equal(summary.captions.new, 9)

    const rows = await lakeRows(
      path.join(dir, 'lake'),
      `SELECT sha256, text, source_kind, source_file, locator, CAST(attributes AS VARCHAR) AS attributes FROM bronze.captions ORDER BY source_kind, locator`,
    )
    const real = realpathSync(root)
    const file = (...p: string[]) => path.join(real, ...p)
    const byKind = (kind: string) => rows.filter((r) => r.source_kind === kind)
    const normalize = (r: Record<string, any>): Record<string, any> => ({...r, attributes: r.attributes === null ? null : JSON.parse(r.attributes)})

    const bySha = (x: Record<string, any>, y: Record<string, any>) => (x.sha256 < y.sha256 ? -1 : x.sha256 > y.sha256 ? 1 : 0)
    assert.deepEqual(
      byKind('sidecar').map(normalize).sort(bySha),
      [
        {sha256: sha(a), text: sidecarText, source_kind: 'sidecar', source_file: file('side', 'a.txt'), locator: 'file', attributes: null},
        {sha256: sha(a2), text: 'ünïcödé 🙂 caption', source_kind: 'sidecar', source_file: file('side', 'a2.png.txt'), locator: 'file', attributes: null},
      ].sort(bySha),
    )
    const jsonl = file('hf', 'metadata.jsonl')
    assert.deepEqual(
      byKind('jsonl').map(normalize).sort((x, y) => x.locator.localeCompare(y.locator)),
      [
        {sha256: sha(b), text: ' b text, untrimmed ', source_kind: 'jsonl', source_file: jsonl, locator: 'line 1', attributes: {score: 0.5, tags: ['x', 'y'], nested: {k: null}}},
        {sha256: sha(c), text: 'c caption', source_kind: 'jsonl', source_file: jsonl, locator: 'line 2', attributes: null},
        {sha256: sha(b), text: 'first of two', source_kind: 'jsonl', source_file: jsonl, locator: 'line 3, caption 1', attributes: null},
        {sha256: sha(b), text: 'second of two', source_kind: 'jsonl', source_file: jsonl, locator: 'line 3, caption 2', attributes: null},
      ],
    )
    assert.deepEqual(byKind('csv').map(normalize), [
      {sha256: sha(d), text: 'd text, with "quotes"', source_kind: 'csv', source_file: file('csv', 'metadata.csv'), locator: 'line 2', attributes: {license: 'cc-by'}},
    ])
    const coco = byKind('coco').map(normalize).sort((x, y) => x.attributes.id - y.attributes.id)
    assert.deepEqual(
      coco.map((r) => [r.sha256, r.text, r.source_file, r.attributes]),
      [
        [sha(e), 'e caption one', file('coco', 'captions_train.json'), {id: 70}],
        [sha(e), 'E caption two ', file('coco', 'captions_train.json'), {id: 71}],
      ],
    )
    assert.equal(rows.length, 9)
    await assertLakeConsistent(path.join(dir, 'lake'), assert)
  } finally {
    cleanup()
  }
})

test('the same photo in two folders is one image with two sources; re-ingest adds nothing and says so', async () => {
  const {dir, cleanup} = tempDir('mlcap-ingest-')
  try {
    const bytes = await writeImage(path.join(dir, 'one', 'beach.png'), 42)
    mkdirSync(path.join(dir, 'two', 'copies'), {recursive: true})
    copyFileSync(path.join(dir, 'one', 'beach.png'), path.join(dir, 'two', 'copies', 'same-beach.png'))
    await writeImage(path.join(dir, 'two', 'other.png'), 43)
    const lake = path.join(dir, 'lake')

    const first = await runCli(['ingest', path.join(dir, 'one'), path.join(dir, 'two'), '--lake', lake])
    assert.equal(first.code, 0, first.stderr)
    assert.match(first.stdout, /3 files: 2 new images, 0 already known/)
    assert.match(first.stdout, /Commit 1 \(run ingest-/)

    const images = await lakeRows(lake, 'SELECT sha256, first_path FROM bronze.images ORDER BY sha256')
    assert.equal(images.length, 2)
    const sources = await lakeRows(lake, `SELECT path, relative_path, root FROM bronze.sources WHERE sha256 = '${sha(bytes)}' ORDER BY path`)
    const real = realpathSync(dir)
    assert.deepEqual(sources, [
      {path: path.join(real, 'one', 'beach.png'), relative_path: 'beach.png', root: path.join(real, 'one')},
      {path: path.join(real, 'two', 'copies', 'same-beach.png'), relative_path: 'copies/same-beach.png', root: path.join(real, 'two')},
    ])
    assert.ok(sources.some((s) => s.path === images.find((i) => i.sha256 === sha(bytes))?.first_path))
    // The bytes are stored once, content-addressed.
    assert.ok(existsSync(path.join(lake, 'objects', sha(bytes).slice(0, 2), sha(bytes))))

    const again = await runCli(['ingest', path.join(dir, 'one'), path.join(dir, 'two'), '--lake', lake])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /0 new images, 2 already known/)
    assert.match(again.stdout, /Nothing new: the lake already had all of it\./)
    const json = await runCli(['ingest', path.join(dir, 'two'), path.join(dir, 'one'), '--lake', lake, '--json', '--rehash'])
    assert.equal(json.code, 0, json.stderr)
    const summary = parseJson(json)
    assert.deepEqual(summary.commits, [])
    assert.deepEqual(summary.images, {new: 0, known: 2})
    assert.deepEqual(summary.sources, {new: 0})
    assert.deepEqual(await assertLakeConsistent(lake, assert), {'bronze.images': 2, 'bronze.sources': 3, 'bronze.captions': 0, 'bronze.rejects': 0})
    assert.equal((await lakeRows(lake, 'SELECT count(*) AS n FROM lake.commits'))[0].n, '1')
  } finally {
    cleanup()
  }
})

test('a caption sidecar added after its image was ingested links to that image on the next run (the image is unchanged, not read again)', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-ingest-sidecar-')
  t.after(cleanup)
  const bytes = await writeImage(path.join(dir, 'in', 'dog.png'), 7)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ingest(layout, [path.join(dir, 'in')])
  writeFileSync(path.join(dir, 'in', 'dog.txt'), 'a dog on a beach')
  const again = await ingest(layout, [path.join(dir, 'in')])
  assert.deepEqual(again.images, {new: 0, known: 1})
  assert.deepEqual(await lakeRows(layout.root, 'SELECT sha256, text FROM bronze.captions'), [{sha256: sha(bytes), text: 'a dog on a beach'}])
  assert.deepEqual(await lakeRows(layout.root, 'SELECT count(*)::INTEGER AS n FROM bronze.rejects'), [{n: 0}])
})

test('EXIF: orientation, camera and capture time are recorded; GPS is a flag unless --keep-gps', async () => {
  const {dir, cleanup} = tempDir('mlcap-ingest-')
  try {
    const photo = path.join(dir, 'in', 'phone.jpg')
    mkdirSync(path.dirname(photo), {recursive: true})
    await sharp({create: {width: 40, height: 20, channels: 3, background: '#884422'}})
      .jpeg()
      .withExif({
        IFD0: {Make: 'TestCam', Model: 'T-1000'},
        IFD2: {DateTimeOriginal: '2021:06:15 10:20:30'},
        IFD3: {GPSLatitudeRef: 'S', GPSLatitude: '33/1 52/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '151/1 12/1 36/1'},
      })
      .withMetadata({orientation: 6})
      .toFile(photo)
    await writeImage(path.join(dir, 'in', 'plain.png'), 9)

    const columns = 'format, width, height, orientation, camera_make, camera_model, captured_at, has_gps, gps_latitude, gps_longitude'
    const without = await runCli(['ingest', path.join(dir, 'in'), '--lake', path.join(dir, 'lake1')])
    assert.equal(without.code, 0, without.stderr)
    const [row] = await lakeRows(path.join(dir, 'lake1'), `SELECT ${columns} FROM bronze.images WHERE format = 'jpeg'`)
    assert.deepEqual(row, {
      format: 'jpeg',
      width: 40,
      height: 20,
      orientation: 6,
      camera_make: 'TestCam',
      camera_model: 'T-1000',
      captured_at: '2021-06-15T10:20:30',
      has_gps: true,
      gps_latitude: null,
      gps_longitude: null,
    })
    const [plain] = await lakeRows(path.join(dir, 'lake1'), `SELECT orientation, has_gps, captured_at FROM bronze.images WHERE format = 'png'`)
    assert.deepEqual(plain, {orientation: null, has_gps: false, captured_at: null})

    const withGps = await runCli(['ingest', path.join(dir, 'in'), '--lake', path.join(dir, 'lake2'), '--keep-gps'])
    assert.equal(withGps.code, 0, withGps.stderr)
    const [gps] = await lakeRows(path.join(dir, 'lake2'), `SELECT has_gps, gps_latitude, gps_longitude FROM bronze.images WHERE format = 'jpeg'`)
    assert.equal(gps.has_gps, true)
    assert.ok(Math.abs(gps.gps_latitude - -(33 + 52 / 60)) < 1e-6, String(gps.gps_latitude))
    assert.ok(Math.abs(gps.gps_longitude - (151 + 12 / 60 + 36 / 3600)) < 1e-6, String(gps.gps_longitude))
    const [params] = await lakeRows(path.join(dir, 'lake2'), `SELECT CAST(params AS VARCHAR) AS p FROM lake.runs`)
    assert.equal(JSON.parse(params.p).keep_gps, true, 'the run records that coordinates were kept')
  } finally {
    cleanup()
  }
})
