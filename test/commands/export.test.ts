/**
 * `mlcap export` and `mlcap export verify` through the CLI (the built dist/, as users run
 * it): the --json contracts, exit codes (0 ok, 1 verify found problems, 2 usage), messages,
 * and that `export` and its `verify` subcommand coexist under the space topic separator.
 */
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {GOLD_PAIRS} from '../../src/lake/schema.js'
import {buildGoldLake} from '../helpers/goldLake.js'
import {CLI, collect, lakeCount, parseJson, runCli, tempDir} from '../helpers/lakeFixtures.js'

let dir: string
let lake: string
let cleanup: () => void
let pairs: number
let images: number

before(async () => {
  ;({dir, cleanup} = tempDir('mlcap-export-cli-'))
  ;({lake} = await buildGoldLake(dir, 12))
  pairs = await lakeCount(lake, 'SELECT count(*) FROM gold.pairs')
  images = await lakeCount(lake, 'SELECT count(DISTINCT sha256) FROM gold.pairs')
})

after(() => cleanup())

test('export --json returns the summary; export verify accepts it (exit 0) and reports tampering (exit 1)', async () => {
  const out = path.join(dir, 'wds')
  const result = await runCli(['export', '--format', 'webdataset', '--out', out, '--lake', lake, '--shard-size', '4', '--json'])
  assert.equal(result.code, 0, result.stderr)
  const summary = parseJson(result)
  assert.deepEqual(Object.keys(summary).sort(), ['bytes', 'commitId', 'counts', 'files', 'format', 'manifestPath', 'outDir', 'replaced', 'seconds'])
  assert.equal(summary.format, 'webdataset')
  assert.equal(summary.outDir, out)
  assert.equal(summary.counts.samples, images)
  assert.equal(summary.counts.captions, pairs)
  assert.equal(summary.commitId, await lakeCount(lake, 'SELECT max(commit_id) FROM lake.commits'))

  const ok = await runCli(['export', 'verify', out])
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, new RegExp(`^OK: .*wds matches its manifest \\(webdataset, ${images} images, \\d+ files, lake commit ${summary.commitId}\\)`))
  const okJson = parseJson(await runCli(['export', 'verify', out, '--json']))
  assert.equal(okJson.ok, true)
  assert.deepEqual(okJson.problems, [])
  assert.equal(okJson.createdFrom.lake_commit, summary.commitId)

  const shard = path.join(out, 'train', '00000.tar')
  const bytes = readFileSync(shard)
  bytes[700] ^= 0xff
  writeFileSync(shard, bytes)
  writeFileSync(path.join(out, 'README.txt'), 'added later')
  const bad = await runCli(['export', 'verify', out])
  assert.equal(bad.code, 1)
  assert.match(bad.stdout, /^unexpected +README\.txt\nsha256 +train\/00000\.tar\n$/)
  assert.match(bad.stderr, /Error: export verify: 2 problem\(s\) in .*wds: 1 unexpected, 1 sha256; expected every file as the manifest lists it/)
  const badJson = await runCli(['export', 'verify', out, '--json'])
  assert.equal(badJson.code, 1)
  assert.deepEqual(parseJson(badJson).problems, [{path: 'README.txt', problem: 'unexpected'}, {path: 'train/00000.tar', problem: 'sha256'}])
})

test('export verify lists duplicate entries, count mismatches (with what disagrees) and extra folders; a damaged manifest is EXPORT_MANIFEST_INVALID, exit 1', async () => {
  const out = path.join(dir, 'csv-damaged')
  assert.equal((await runCli(['export', '-f', 'csv', '-o', out, '--lake', lake])).code, 0)
  const manifestPath = path.join(out, 'manifest.json')
  const original = readFileSync(manifestPath, 'utf8')
  const manifest = JSON.parse(original)
  manifest.counts.samples++
  manifest.files.push(manifest.files.at(-1))
  writeFileSync(manifestPath, JSON.stringify(manifest))
  mkdirSync(path.join(out, 'empty'))
  const last = manifest.files.at(-1).path
  const text = await runCli(['export', 'verify', out])
  assert.equal(text.code, 1)
  const counted = `counts.samples is ${images + 1}`
  assert.equal(text.stdout, [
    'unexpected empty/',
    `duplicate  ${last}: listed 2 times in manifest.json`,
    `count      manifest.json: ${counted} but the manifest lists ${images} image file(s) in the export; expected one per sample`,
    `count      manifest.json: ${counted} but the splits add up to ${images}`,
    '',
  ].join('\n'))
  assert.match(text.stderr, /Error: export verify: 4 problem\(s\) in .*csv-damaged: 1 unexpected, 1 duplicate, 2 count; expected every file as the manifest lists it, and its counts to agree with them\n/)
  const json = await runCli(['export', 'verify', out, '--json'])
  assert.equal(json.code, 1)
  assert.deepEqual(parseJson(json).problems.map((problem: {path: string; problem: string; detail?: string}) => [problem.path, problem.problem, problem.detail]), [
    ['empty/', 'unexpected', undefined],
    [last, 'duplicate', 'listed 2 times in manifest.json'],
    ['manifest.json', 'count', `${counted} but the manifest lists ${images} image file(s) in the export; expected one per sample`],
    ['manifest.json', 'count', `${counted} but the splits add up to ${images}`],
  ])

  delete manifest.counts
  writeFileSync(manifestPath, JSON.stringify(manifest))
  const damaged = await runCli(['export', 'verify', out])
  assert.equal(damaged.code, 1)
  assert.equal(damaged.stdout, '')
  assert.match(damaged.stderr, /^Error: export: .*csv-damaged\/manifest\.json: counts is missing; expected a JSON object \{samples, captions, splits\}\nHint: the export was modified or damaged/)
  assert.doesNotMatch(damaged.stderr, /--debug/)
  rmSync(manifestPath)
  mkdirSync(manifestPath)
  const folder = await runCli(['export', 'verify', out, '--json'])
  assert.equal(folder.code, 1)
  assert.deepEqual(parseJson(folder).error, {
    code: 'EXPORT_MANIFEST_INVALID',
    message: `export: ${manifestPath}: it is a folder; expected the JSON file mlcap wrote`,
    hint: 'the export was modified or damaged: copy it again from a good copy, or export again',
    exitCode: 1,
  })
  rmSync(manifestPath, {recursive: true})
  rmSync(path.join(out, 'empty'), {recursive: true})
  writeFileSync(manifestPath, original)
  assert.equal((await runCli(['export', 'verify', out])).code, 0)
})

test('export refuses an existing export without --overwrite (exit 2) and replaces it with it; human output names what was written', async () => {
  const out = path.join(dir, 'jsonl')
  const first = await runCli(['export', '-f', 'jsonl', '-o', out, '--lake', lake, '--captions', 'first', '--split', 'train'])
  assert.equal(first.code, 0, first.stderr)
  assert.match(first.stdout, new RegExp(`^Wrote .*jsonl: jsonl, \\d+ images and \\d+ captions \\(train \\d+\\) from lake commit \\d+; \\d+ files, .* in [\\d.]+ s\\.\\nCheck it any time with: mlcap export verify .*jsonl\\n$`))
  const again = await runCli(['export', '-f', 'jsonl', '-o', out, '--lake', lake])
  assert.equal(again.code, 2)
  assert.match(again.stderr, /Error: export: .*jsonl already holds an export; expected an empty or new folder\nHint: pass overwrite \(--overwrite\)/)
  const replaced = await runCli(['export', '-f', 'jsonl', '-o', out, '--lake', lake, '--overwrite', '--json'])
  assert.equal(replaced.code, 0, replaced.stderr)
  assert.equal(parseJson(replaced).replaced, true)
  assert.equal(parseJson(replaced).counts.samples, images)
})

test('a hostile --where exits 2 with the reason, as text and as JSON; nothing is written', async () => {
  const out = path.join(dir, 'hostile')
  const text = await runCli(['export', '-f', 'csv', '-o', out, '--lake', lake, '--where', "1=1; COPY (SELECT 1) TO 'x.csv'"])
  assert.equal(text.code, 2)
  assert.match(text.stderr, /Error: export: --where "1=1; COPY \(SELECT 1\) TO 'x.csv'" does not parse as a predicate/)
  assert.match(text.stderr, /Hint: columns of gold\.pairs: /)
  const json = await runCli(['export', '-f', 'csv', '-o', out, '--lake', lake, '--where', `read_text('/etc/passwd') is not null`, '--json'])
  assert.equal(json.code, 2)
  assert.equal(parseJson(json).error.code, 'PREDICATE_INVALID')
  const empty = await runCli(['export', '-f', 'csv', '-o', out, '--lake', lake, '--where', 'words > 500'])
  assert.equal(empty.code, 1)
  assert.match(empty.stderr, /Error: export: --where "words > 500" selected none of the \d+ pairs in gold\.pairs/)
  const missing = await runCli(['export', 'verify', path.join(dir, 'nowhere')])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /Error: export verify: .*nowhere is not a folder/)
})

test('help shows both commands with examples', async () => {
  const help = await runCli(['export', '--help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /\$ mlcap export -f hf\|imagefolder\|webdataset\|coco\|jsonl\|csv -o/)
  assert.match(help.stdout, /mlcap export verify \.\/export\/hf/)
  const whereColumns = help.stdout.replace(/\s+/g, ' ').match(/--where is a SQL predicate over the columns of gold\.pairs \(([^)]*)\)/)
  assert.deepEqual(whereColumns?.[1]?.split(', '), GOLD_PAIRS.columns.map((c) => c.name), 'every column --where can use is named')
  const verifyHelp = await runCli(['export', 'verify', '--help'])
  assert.equal(verifyHelp.code, 0)
  assert.match(verifyHelp.stdout, /\$ mlcap export verify DIR/)
})

test('a write that fails mid-export (here a file size limit) exits 1 naming the file, the cause and what to do; nothing is left behind', async () => {
  const out = path.join(dir, 'too-big')
  // bash ignores SIGXFSZ for the CLI, so writing past `ulimit -f` (KiB) fails with EFBIG instead of killing it
  const child = spawn('bash', ['-c', 'trap "" XFSZ; ulimit -f 16; exec "$0" "$@"', process.execPath, CLI, 'export', '--format', 'webdataset', '--out', out, '--lake', lake], {
    env: {...process.env, NODE_OPTIONS: ''},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const result = await collect(child, Date.now(), {timeoutMs: 60_000})
  assert.equal(result.code, 1, result.stderr)
  assert.match(result.stderr, /Error: export: could not write .*too-big\.partial-[^/]+\/(train|val|test)\/00000\.tar: EFBIG: file too large/)
  assert.match(result.stderr, /Hint: the file is larger than this system or file system allows \(ulimit -f, FAT32\): lower --shard-size/)
  assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith('too-big')), [])
})

test('--verify-images hashes every image: a damaged object of the right size fails the export (exit 1, named, with the repair); without it the size check passes it', async () => {
  const [row] = (await runCli(['query', 'SELECT image_sha256 FROM gold.pairs ORDER BY image_sha256 LIMIT 1', '--lake', lake, '--json']).then(parseJson)).rows
  const object = path.join(lake, 'objects', row.image_sha256.slice(0, 2), row.image_sha256)
  const intact = readFileSync(object)
  const damaged = Buffer.from(intact)
  damaged[damaged.length >> 1] ^= 0xff
  writeFileSync(object, damaged)
  try {
    const checked = await runCli(['export', '--format', 'jsonl', '--out', path.join(dir, 'verify-images'), '--lake', lake, '--verify-images'])
    assert.equal(checked.code, 1, checked.stderr)
    assert.match(checked.stderr, new RegExp(`EXPORT_HASH_MISMATCH|hashes to [0-9a-f]{64} but the sample says sha256 ${row.image_sha256}`))
    assert.match(checked.stderr, /mlcap etl run silver --full/)
    assert.deepEqual(readdirSync(dir).filter((name) => name.startsWith('verify-images')), [], 'nothing left behind')
    const unchecked = await runCli(['export', '--format', 'jsonl', '--out', path.join(dir, 'size-only'), '--lake', lake])
    assert.equal(unchecked.code, 0, unchecked.stderr)
  } finally {
    writeFileSync(object, intact)
  }
})
