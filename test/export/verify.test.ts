/**
 * verifyExport beyond changed files: duplicate manifest entries, counts that disagree with
 * each other or with the listed files, folders the manifest does not explain, and damaged
 * manifests (EXPORT_MANIFEST_INVALID, never a TypeError, never a read outside the folder).
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdir, readFile, rm, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {EXPORT_FORMATS, writeExport, type ExportFormat} from '../../src/export/exporter.js'
import {verifyExport} from '../../src/export/manifest.js'
import type {CaptionMode} from '../../src/export/sample.js'
import {editManifest, makeSamples, sha256, streamOf, tempDir} from './fixtures.js'

const FORMATS = Object.keys(EXPORT_FORMATS) as ExportFormat[]

async function exported(t: Parameters<typeof tempDir>[0], format: ExportFormat, options: {captions?: CaptionMode; shardSize?: number; count?: number} = {}): Promise<string> {
  const samples = (await makeSamples()).slice(0, options.count ?? 30)
  const outDir = join(await tempDir(t), 'out')
  await writeExport(streamOf(samples), {format, outDir, captions: options.captions ?? 'all', shardSize: options.shardSize, manifestInfo: {lake_commit: 1}})
  return outDir
}

const count = (detail: string) => ({path: 'manifest.json', problem: 'count', detail})

for (const format of FORMATS) {
  test(`${format}: a fresh export of one split (the others empty: no folders, zero counts) verifies OK`, async (t) => {
    const train = (await makeSamples()).filter((sample) => sample.split === 'train')
    const outDir = join(await tempDir(t), 'out')
    await writeExport(streamOf(train), {format, outDir, captions: 'first', shardSize: 5, manifestInfo: {}})
    assert.deepEqual(await verifyExport(outDir), {ok: true, problems: []})
  })
}

test('a path the manifest lists twice is a duplicate, even when both entries match the file', async (t) => {
  const out = await exported(t, 'imagefolder')
  let path = ''
  await editManifest(out, (manifest) => {
    path = manifest.files[0].path
    manifest.files.splice(1, 0, {...manifest.files[0]}, {...manifest.files[0]})
    return manifest
  })
  assert.deepEqual(await verifyExport(out), {ok: false, problems: [{path, problem: 'duplicate', detail: 'listed 3 times in manifest.json'}]})
})

test('totals that are not the sum of the splits, and captions that do not fit the caption mode, are count problems', async (t) => {
  const jsonl = await exported(t, 'jsonl')
  await editManifest(jsonl, (manifest) => ({...manifest, counts: {...manifest.counts, samples: 31}}))
  assert.deepEqual(await verifyExport(jsonl), {ok: false, problems: [
    count('counts.samples is 31 but the manifest lists 30 image file(s) in the export; expected one per sample'),
    count('counts.samples is 31 but the splits add up to 30'),
  ]})

  const csv = await exported(t, 'csv', {captions: 'first'})
  await editManifest(csv, (manifest) => {
    manifest.counts.captions++
    manifest.counts.splits.test.captions++
    return manifest
  })
  assert.deepEqual(await verifyExport(csv), {ok: false, problems: [
    count('counts.splits.test.captions is 7 for 6 samples; expected one caption per sample (captions: first)'),
  ]})
})

test('sample counts that disagree with the image files the manifest lists (per split, or in all) are count problems', async (t) => {
  // an image deleted from the folder and from the file list alike: every hash still matches
  const coco = await exported(t, 'coco')
  let removed = ''
  await editManifest(coco, (manifest) => {
    removed = manifest.files.find((file: {path: string}) => file.path.startsWith('train/images/')).path
    manifest.files = manifest.files.filter((file: {path: string}) => file.path !== removed)
    return manifest
  })
  await rm(join(coco, removed))
  assert.deepEqual(await verifyExport(coco), {ok: false, problems: [
    count('counts.splits.train.samples is 18 but the manifest lists 17 image file(s) in train/; expected one per sample'),
  ]})

  const csv = await exported(t, 'csv')
  await editManifest(csv, (manifest) => {
    const path = manifest.files.find((file: {path: string}) => file.path.startsWith('images/')).path
    manifest.files = manifest.files.filter((file: {path: string}) => file.path !== path)
    return manifest
  })
  const result = await verifyExport(csv)
  assert.deepEqual(result.problems.filter((problem) => problem.problem === 'count'), [
    count('counts.samples is 30 but the manifest lists 29 image file(s) in the export; expected one per sample'),
  ])
})

test('shard counts that no sample count allows are count problems (webdataset, hf)', async (t) => {
  // val's samples moved to train in the counts: the totals still add up, but val/ has a shard
  const wds = await exported(t, 'webdataset', {shardSize: 10})
  await editManifest(wds, (manifest) => {
    const {train, val} = manifest.counts.splits
    manifest.counts.splits.train = {samples: train.samples + val.samples, captions: train.captions + val.captions}
    manifest.counts.splits.val = {samples: 0, captions: 0}
    return manifest
  })
  assert.deepEqual(await verifyExport(wds), {ok: false, problems: [
    count('counts.splits.val.samples is 0 but the manifest lists 1 shard(s) in val/; expected none'),
  ]})

  const hf = await exported(t, 'hf', {shardSize: 1}) // train: 18 shards of one sample
  await editManifest(hf, (manifest) => {
    manifest.counts.splits.train.samples--
    manifest.counts.splits.val.samples++
    return manifest
  })
  assert.deepEqual(await verifyExport(hf), {ok: false, problems: [
    count('counts.splits.train.samples is 17 but the manifest lists 18 shard(s) in train/; expected 1 to 17 (each holds at least one sample)'),
  ]})
})

test('a folder that holds no listed file is unexpected, empty or not (only the outermost is named)', async (t) => {
  const out = await exported(t, 'imagefolder')
  await mkdir(join(out, 'empty'))
  await mkdir(join(out, 'train', 'more', 'deeper'), {recursive: true})
  await mkdir(join(out, 'notes'))
  await writeFile(join(out, 'notes', 'a.txt'), 'hello')
  assert.deepEqual(await verifyExport(out), {ok: false, problems: [
    {path: 'empty/', problem: 'unexpected'},
    {path: 'notes/', problem: 'unexpected'},
    {path: 'notes/a.txt', problem: 'unexpected'},
    {path: 'train/more/', problem: 'unexpected'},
  ]})
})

test('a damaged manifest (missing fields, wrong types) is EXPORT_MANIFEST_INVALID naming the field and what was expected', async (t) => {
  const out = await exported(t, 'jsonl', {count: 5})
  const path = join(out, 'manifest.json')
  const original = await readFile(path, 'utf8')
  const cases: Array<[(manifest: any) => unknown, RegExp]> = [
    [() => [], /: the manifest is \[\] \(an array\); expected a JSON object \{mlcap_version, format, options, created_from, counts, files\}$/],
    [() => null, /: the manifest is null \(null\); expected a JSON object/],
    [({mlcap_version, ...rest}) => rest, /: mlcap_version is missing; expected a non-empty string$/],
    [({format, ...rest}) => rest, /: format is missing; expected a non-empty string$/],
    [(manifest) => ({...manifest, format: 3}), /: format is 3 \(a number\); expected a non-empty string$/],
    [({options, ...rest}) => rest, /: options is missing; expected a JSON object$/],
    [(manifest) => ({...manifest, options: {}}), /: options\.captions is missing; expected one of first, all$/],
    [(manifest) => ({...manifest, created_from: 'lake'}), /: created_from is "lake" \(a string\); expected a JSON object$/],
    [({counts, ...rest}) => rest, /: counts is missing; expected a JSON object \{samples, captions, splits\}$/],
    [(manifest) => ({...manifest, counts: {...manifest.counts, samples: '5'}}), /: counts\.samples is "5" \(a string\); expected a whole number >= 0$/],
    [(manifest) => ({...manifest, counts: {...manifest.counts, splits: null}}), /: counts\.splits is null \(null\); expected a JSON object with train, val, test$/],
    [(manifest) => {
      delete manifest.counts.splits.val
      return manifest
    }, /: counts\.splits\.val is missing; expected a JSON object \{samples, captions\}$/],
    [(manifest) => ({...manifest, counts: {...manifest.counts, splits: {...manifest.counts.splits, dev: {samples: 0, captions: 0}}}}), /: counts\.splits has an unknown split "dev"; expected only train, val, test$/],
    [(manifest) => {
      manifest.counts.splits.train.captions = -1
      return manifest
    }, /: counts\.splits\.train\.captions is -1 \(a number\); expected a whole number >= 0$/],
    [({files, ...rest}) => rest, /: files is missing; expected an array of \{path, bytes, sha256\}$/],
    [(manifest) => ({...manifest, files: {}}), /: files is \{\} \(an object\); expected an array of \{path, bytes, sha256\}$/],
    [(manifest) => ({...manifest, files: [null]}), /: files\[0\] is null \(null\); expected a JSON object \{path, bytes, sha256\}$/],
    [(manifest) => ({...manifest, files: [{bytes: 1, sha256: '0'.repeat(64)}]}), /: files\[0\]\.path is missing; expected a non-empty string$/],
    [(manifest) => ({...manifest, files: [{...manifest.files[0], bytes: '12'}]}), /: files\[0\]\.bytes is "12" \(a string\); expected a whole number >= 0$/],
    [(manifest) => ({...manifest, files: [{...manifest.files[0], bytes: 1.5}]}), /: files\[0\]\.bytes is 1\.5 \(a number\); expected a whole number >= 0$/],
    [(manifest) => ({...manifest, files: [{...manifest.files[0], sha256: manifest.files[0].sha256.toUpperCase()}]}), /: files\[0\]\.sha256 is "[0-9A-F]{64}" \(a string\); expected 64 lower-case hex digits$/],
  ]
  for (const [edit, message] of cases) {
    await writeFile(path, original)
    await editManifest(out, edit)
    await assert.rejects(verifyExport(out), (error: {code?: string; message: string; hint?: string}) => {
      assert.equal(error.code, 'EXPORT_MANIFEST_INVALID', error.message)
      assert.ok(error.message.startsWith(`export: ${path}: `), error.message)
      assert.match(error.message, message)
      assert.match(error.hint ?? '', /copy it again from a good copy, or export again/)
      return true
    })
  }
  await writeFile(path, original)
  assert.deepEqual(await verifyExport(out), {ok: true, problems: []})
  await writeFile(path, '{"files": [')
  await assert.rejects(verifyExport(out), {code: 'EXPORT_MANIFEST_INVALID', message: /manifest\.json is not valid JSON/})
})

test('a manifest path outside the folder (.., absolute) or not plain is EXPORT_MANIFEST_INVALID; nothing outside is read', async (t) => {
  const out = await exported(t, 'jsonl', {count: 5})
  const outside = join(out, '..', 'outside.txt')
  await writeFile(outside, 'not part of the export')
  const entry = {bytes: 22, sha256: sha256('not part of the export')}
  const path = join(out, 'manifest.json')
  const original = await readFile(path, 'utf8')
  const cases: Array<[string, RegExp]> = [
    ['../outside.txt', /: files\[\d+\]\.path "\.\.\/outside\.txt" leads outside the export folder; expected a relative path inside the export folder/],
    ['images/../../outside.txt', /"images\/\.\.\/\.\.\/outside\.txt" leads outside the export folder/],
    ['..\\outside.txt', /"\.\.\\\\outside\.txt" leads outside the export folder/],
    [outside, /" is absolute; expected a relative path inside the export folder/],
    ['C:\\outside.txt', /" is absolute/],
    ['images//x.jpg', /"images\/\/x\.jpg" is not a plain relative path/],
    ['./captions.jsonl', /"\.\/captions\.jsonl" is not a plain relative path/],
    ['images\\x.jpg', /"images\\\\x\.jpg" is not a plain relative path/],
  ]
  for (const [bad, message] of cases) {
    await writeFile(path, original)
    await editManifest(out, (manifest) => ({...manifest, files: [...manifest.files, {path: bad, ...entry}]}))
    await assert.rejects(verifyExport(out), (error: {code?: string; message: string}) => {
      assert.equal(error.code, 'EXPORT_MANIFEST_INVALID', error.message)
      assert.match(error.message, message)
      return true
    })
  }
})

test('manifest.json that is a folder or a symbolic link is EXPORT_MANIFEST_INVALID', async (t) => {
  const out = await exported(t, 'csv', {count: 5})
  const path = join(out, 'manifest.json')
  const copy = join(out, '..', 'manifest-copy.json')
  await writeFile(copy, await readFile(path))
  await rm(path)
  await symlink(copy, path)
  await assert.rejects(verifyExport(out), {code: 'EXPORT_MANIFEST_INVALID', message: `export: ${path}: it is a symbolic link; expected the JSON file mlcap wrote`})
  await rm(path)
  await mkdir(path)
  await assert.rejects(verifyExport(out), {code: 'EXPORT_MANIFEST_INVALID', message: `export: ${path}: it is a folder; expected the JSON file mlcap wrote`})
})
