/**
 * Issue 3, gold, through the real stages: near-duplicate groups and splits (a group never
 * straddles splits, also across incremental runs), --dedupe, quality filters into
 * gold.excluded, parameters recorded per run, and a split that does not depend on the order
 * a lake was built in.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import sharp from 'sharp'

import {runGold} from '../../src/lake/gold.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runSilver} from '../../src/lake/silver.js'
import {assignSplit, DEFAULT_SPLIT_RATIOS} from '../../src/lake/split.js'
import {hammingDistance} from '../../src/lake/perceptualHash.js'
import {lakeStatus} from '../../src/lake/status.js'
import {blobImage, lakeCount, lakeRows, tempDir} from '../helpers/lakeFixtures.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')
const BASES = 12

interface Fixture {
  rel: string
  bytes: Buffer
  caption: string
}

function write(dir: string, items: readonly Fixture[]): void {
  for (const item of items) {
    const file = path.join(dir, item.rel)
    mkdirSync(path.dirname(file), {recursive: true})
    writeFileSync(file, item.bytes)
    writeFileSync(file.replace(/\.\w+$/, '.txt'), item.caption)
  }
}

async function fixtures() {
  const bases: Fixture[] = []
  for (let i = 0; i < BASES; i++) bases.push({rel: `base-${i}.png`, bytes: await blobImage(i), caption: `picture number ${i} with coloured blobs`})
  const original = bases[0]!.bytes
  const resized: Fixture = {rel: 'copy-resized.png', bytes: await sharp(original).resize(150, 112).png().toBuffer(), caption: 'a smaller copy of picture zero'}
  const reencoded: Fixture = {rel: 'copy-reencoded.jpg', bytes: await sharp(original).jpeg({quality: 55}).toBuffer(), caption: 'a recompressed copy of picture zero'}
  const small: Fixture = {rel: 'small.png', bytes: await blobImage(20, {width: 48, height: 48}), caption: 'too small for gold'}
  const wordy: Fixture = {rel: 'wordy.png', bytes: await blobImage(21), caption: Array.from({length: 30}, (_, i) => `word${i}`).join(' ')}
  const terse: Fixture = {rel: 'terse.png', bytes: await blobImage(22), caption: 'Blobs'}
  const late: Fixture = {rel: 'late.png', bytes: await blobImage(23), caption: 'a picture that arrives later'}
  return {bases, resized, reencoded, small, wordy, terse, late}
}

/** Runs silver then gold; returns the gold summary. */
async function etl(layout: LakeLayout, gold: Parameters<typeof runGold>[1] = {}) {
  const silver = await runSilver(layout, {concurrency: 2})
  assert.notEqual(silver.status, 'interrupted')
  return runGold(layout, gold)
}

const FILTERS = {maxWords: 20, minWords: 2}

async function assertNoGroupStraddles(lake: string): Promise<void> {
  const straddling = await lakeRows(lake, `SELECT group_id, list(DISTINCT split) AS splits FROM gold.pairs GROUP BY group_id HAVING count(DISTINCT split) > 1`)
  assert.deepEqual(straddling, [], 'a near-duplicate group in more than one split')
}

test('gold: near-duplicate groups share a split across incremental runs; filters and params recorded; --dedupe keeps one per group', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-')
  t.after(cleanup)
  const f = await fixtures()
  const lake = path.join(dir, 'lake')
  const layout = new LakeLayout(lake)
  const shaOf = (x: Fixture) => sha256(x.bytes)

  // Run 1: the bases, the resized copy of base 0, and images the filters exclude.
  const in1 = path.join(dir, 'in1')
  write(in1, [...f.bases, f.resized, f.small, f.wordy, f.terse])
  await ingest(layout, [in1], {concurrency: 2})
  const gold1 = await etl(layout, {filters: FILTERS})
  assert.equal(gold1.status, 'succeeded')
  assert.equal(gold1.rowsIn, BASES + 4)
  assert.deepEqual(gold1.added, {'gold.pairs': BASES + 1, 'gold.excluded': 3})
  assert.deepEqual(gold1.rejects, {min_side: 1, max_words: 1, min_words: 1})

  const pairs1 = new Map((await lakeRows(lake, `SELECT * FROM gold.pairs`)).map((r) => [r.sha256 as string, r]))
  const base0 = pairs1.get(shaOf(f.bases[0]!))!
  const copy = pairs1.get(shaOf(f.resized))!
  assert.equal(copy.group_id, base0.group_id, 'the resized copy is in its original’s group')
  assert.equal(copy.split, base0.split)
  assert.equal(base0.group_id, [shaOf(f.bases[0]!), shaOf(f.resized)].sort()[0], 'a group is named after its smallest member')
  const baseGroups = new Set(f.bases.map((b) => pairs1.get(shaOf(b))!.group_id))
  assert.equal(baseGroups.size, BASES, 'different images fall in different groups')
  for (const b of f.bases.slice(1)) assert.equal(pairs1.get(shaOf(b))!.group_id, shaOf(b))
  for (const p of pairs1.values()) {
    assert.equal(p.split, assignSplit(p.group_id, DEFAULT_SPLIT_RATIOS, ''), 'split = stable hash of the group')
    assert.equal(p.run_id, gold1.runId)
  }
  await assertNoGroupStraddles(lake)

  const excluded = new Map((await lakeRows(lake, `SELECT * FROM gold.excluded`)).map((r) => [r.reason as string, r]))
  assert.deepEqual([...excluded.keys()].sort(), ['max_words', 'min_side', 'min_words'])
  assert.equal(excluded.get('min_side')!.sha256, shaOf(f.small))
  assert.equal(excluded.get('min_side')!.detail, 'shorter side 48 px < 64')
  assert.equal(excluded.get('max_words')!.sha256, shaOf(f.wordy))
  assert.equal(excluded.get('max_words')!.detail, '30 words > 20')
  assert.equal(excluded.get('min_words')!.sha256, shaOf(f.terse))
  assert.equal(excluded.get('min_words')!.detail, '1 words < 2')
  for (const x of excluded.values()) assert.ok(!pairs1.has(x.sha256), 'excluded pairs are not in gold.pairs')

  // Each gold run records its parameters and the commit it read.
  const lastSilverCommit = await lakeCount(lake, `SELECT max(commit_id) FROM lake.commits WHERE operation = 'silver'`)
  const run1 = (await lakeRows(lake, `SELECT * FROM lake.runs WHERE run_id = '${gold1.runId}'`))[0]!
  const params1 = JSON.parse(run1.params)
  assert.deepEqual(params1.filters, {minSide: 64, minSharpness: 0, minWords: 2, maxWords: 20, captionSources: ['human', 'model']})
  assert.equal(params1.near_duplicate_distance, 8)
  assert.deepEqual(params1.ratios, {train: 0.9, val: 0.05, test: 0.05})
  assert.equal(params1.input_commit, lastSilverCommit)
  assert.equal(params1.dedupe, false)
  assert.deepEqual([run1.status, Number(run1.rows_in), Number(run1.rows_out)], ['succeeded', BASES + 4, BASES + 4])

  // Run 2 (incremental): a re-encoded copy of base 0 joins the existing group and split.
  const in2 = path.join(dir, 'in2')
  write(in2, [f.reencoded, f.late])
  await ingest(layout, [in2], {concurrency: 2})
  const gold2 = await etl(layout, {filters: FILTERS})
  assert.equal(gold2.rowsIn, 2, 'only the new pairs are considered')
  assert.deepEqual(gold2.added, {'gold.pairs': 2})
  const reencoded = (await lakeRows(lake, `SELECT * FROM gold.pairs WHERE sha256 = '${shaOf(f.reencoded)}'`))[0]!
  assert.equal(reencoded.group_id, base0.group_id, 'the JPEG copy joins the group gold already had')
  assert.equal(reencoded.split, base0.split)
  assert.equal(reencoded.run_id, gold2.runId)
  const lateRow = (await lakeRows(lake, `SELECT * FROM gold.pairs WHERE sha256 = '${shaOf(f.late)}'`))[0]!
  assert.equal(lateRow.group_id, shaOf(f.late))
  // Earlier rows did not move.
  for (const [sha, p] of pairs1) {
    const now = (await lakeRows(lake, `SELECT group_id, split FROM gold.pairs WHERE sha256 = '${sha}'`))[0]!
    assert.deepEqual([now.group_id, now.split], [p.group_id, p.split])
  }
  await assertNoGroupStraddles(lake)
  assert.equal(await lakeCount(lake, `SELECT count(*) - count(DISTINCT pair_id) FROM gold.pairs`), 0)

  // --dedupe (as a --full rebuild): one image per group, the others excluded as near_duplicate.
  const dedup = await runGold(layout, {filters: FILTERS, dedupe: true, full: true})
  assert.equal(dedup.status, 'succeeded')
  assert.equal(dedup.rejects.near_duplicate, 2)
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM (SELECT group_id FROM gold.pairs GROUP BY group_id HAVING count(DISTINCT sha256) > 1)`), 0)
  // A rebuild groups from scratch, as a new lake would: the trio is named after its smallest member.
  const trio = [f.bases[0]!, f.resized, f.reencoded].map(shaOf).sort()
  const groupMembers = await lakeRows(lake, `SELECT sha256, reason, detail FROM gold.excluded WHERE group_id = '${trio[0]}' ORDER BY sha256`)
  assert.equal(groupMembers.length, 2, JSON.stringify(await lakeRows(lake, `SELECT sha256, group_id, reason FROM gold.excluded`)))
  assert.ok(groupMembers.every((m) => m.reason === 'near_duplicate' && String(m.detail).startsWith(`group ${trio[0]} keeps `)))
  const kept = await lakeRows(lake, `SELECT sha256 FROM gold.pairs WHERE group_id = '${trio[0]}'`)
  assert.equal(kept.length, 1)
  assert.deepEqual([kept[0]!.sha256, ...groupMembers.map((m) => m.sha256)].sort(), trio)
  assert.equal(await lakeCount(lake, `SELECT count(*) FROM gold.pairs`), BASES + 1, 'the bases and the late image')
  assert.equal(await lakeCount(lake, `SELECT count(*) - count(DISTINCT pair_id) FROM gold.excluded`), 0)
  assert.equal(JSON.parse((await lakeRows(lake, `SELECT params FROM lake.runs WHERE run_id = '${dedup.runId}'`))[0]!.params).dedupe, true)
  await assertNoGroupStraddles(lake)
})

test('gold split: the same image gets the same split in a lake built in another order', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-goldorder-')
  t.after(cleanup)
  const f = await fixtures()
  const all = [...f.bases, f.late]
  const a = new LakeLayout(path.join(dir, 'a'))
  const b = new LakeLayout(path.join(dir, 'b'))
  // Lake a: everything at once. Lake b: in reverse order, in three incremental runs.
  write(path.join(dir, 'all'), all)
  await ingest(a, [path.join(dir, 'all')], {concurrency: 2})
  await etl(a)
  const reversed = [...all].reverse()
  for (let part = 0; part < 3; part++) {
    const folder = path.join(dir, `part-${part}`)
    write(folder, reversed.slice(part * 5, part * 5 + 5))
    await ingest(b, [folder], {concurrency: 2})
    await etl(b)
  }
  const splitsA = await lakeRows(a.root, `SELECT sha256, split, group_id FROM gold.pairs ORDER BY sha256`)
  const splitsB = await lakeRows(b.root, `SELECT sha256, split, group_id FROM gold.pairs ORDER BY sha256`)
  assert.equal(splitsA.length, all.length)
  assert.deepEqual(splitsB, splitsA)
})

test('assignSplit: deterministic, about 90/5/5 over 400 group ids, the seed reshuffles', () => {
  const counts = {train: 0, val: 0, test: 0}
  const ids = Array.from({length: 400}, (_, i) => sha256(Buffer.from(`group ${i}`)))
  for (const id of ids) counts[assignSplit(id)]++
  assert.ok(counts.train >= 340 && counts.train <= 380, JSON.stringify(counts))
  assert.ok(counts.val >= 8 && counts.val <= 34, JSON.stringify(counts))
  assert.ok(counts.test >= 8 && counts.test <= 34, JSON.stringify(counts))
  assert.deepEqual(ids.map((id) => assignSplit(id)), ids.map((id) => assignSplit(id, {train: 0.9, val: 0.05, test: 0.05}, '')))
  const seeded = ids.map((id) => assignSplit(id, DEFAULT_SPLIT_RATIOS, 'other seed'))
  assert.ok(seeded.filter((s, i) => s !== assignSplit(ids[i]!)).length > 20, 'a new seed moves many groups')
  const eighty = {train: 0, val: 0, test: 0}
  for (const id of ids) eighty[assignSplit(id, {train: 0.8, val: 0.1, test: 0.1})]++
  assert.ok(eighty.train >= 295 && eighty.train <= 345 && eighty.val >= 22 && eighty.test >= 22, JSON.stringify(eighty))
})

test('gold after silver --full: pairs that no longer match silver (rejected, or new derivatives) make the next gold run a rebuild; status shows it pending', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-stale-')
  t.after(cleanup)
  const {bases} = await fixtures()
  write(path.join(dir, 'in'), bases.slice(0, 4))
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ingest(layout, [path.join(dir, 'in')])
  await etl(layout)
  assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM gold.pairs'), 4)
  const pendingGold = async () => (await lakeStatus(layout)).pending.find((p) => p.stage === 'gold')!.items

  // New derivatives (another size): gold still names the old ones until it is rebuilt.
  await runSilver(layout, {full: true, normalize: {maxSide: 100}})
  assert.equal(await pendingGold(), 8, 'the 4 stale pairs and the 4 pairs to decide again')
  const resized = await runGold(layout)
  assert.equal(resized.status, 'succeeded')
  assert.equal(resized.params.full, true)
  assert.match(String(resized.params.rebuilt_because), /^4 gold pairs no longer matched silver/)
  const rows = await lakeRows(layout.root, 'SELECT g.image_sha256 = s.normalized_sha256 AS same, g.width FROM gold.pairs g JOIN silver.images s USING (sha256)')
  assert.deepEqual(rows.map((r) => [r.same, Number(r.width)]), Array(4).fill([true, 100]))
  assert.equal(await pendingGold(), 0)
  assert.equal((await runGold(layout)).status, 'nothing_to_do', 'gold matches silver again: nothing to rebuild')

  // Every image rejected now: gold is emptied (it used to fail reading a null pHash).
  await runSilver(layout, {full: true, normalize: {minSide: 1000}})
  assert.equal(await pendingGold(), 4)
  const emptied = await runGold(layout)
  assert.equal(emptied.status, 'succeeded', 'a rebuild that removes every pair is not "nothing to do"')
  assert.equal(emptied.commits.length, 1)
  assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM gold.pairs'), 0)
  assert.equal(await pendingGold(), 0)
})

/**
 * Three blends of two pictures: `middle` is within `threshold` of `first` and of `last`,
 * which are not within it of each other (a bridge between two near-duplicate groups).
 */
async function bridge(dir: string): Promise<{first: Fixture; middle: Fixture; last: Fixture; threshold: number}> {
  // Blends of two pictures in 9 steps: neighbours are near-duplicates, the ends are not.
  const [a, b] = [await blobImage(3), await blobImage(4)]
  const blends: Fixture[] = []
  for (let step = 0; step <= 8; step++) {
    const mixed = await sharp(a).composite([{input: await sharp(b).ensureAlpha(step / 8).png().toBuffer()}]).png().toBuffer()
    blends.push({rel: `blend-${step}.png`, bytes: mixed, caption: `blend number ${step} of two pictures`})
  }
  // Measure their pHashes once, in a probe lake, to pick ends and a middle for some threshold.
  const probe = new LakeLayout(path.join(dir, 'probe'))
  write(path.join(dir, 'blends'), blends)
  await ingest(probe, [path.join(dir, 'blends')])
  await runSilver(probe, {concurrency: 2})
  const phash = new Map((await lakeRows(probe.root, 'SELECT sha256, phash FROM silver.images')).map((r) => [r.sha256, BigInt(`0x${r.phash}`)]))
  const dist = (x: Fixture, y: Fixture) => hammingDistance(phash.get(sha256(x.bytes))!, phash.get(sha256(y.bytes))!)
  let pick: {first: Fixture; middle: Fixture; last: Fixture; threshold: number} | undefined
  for (let i = 0; i < blends.length && !pick; i++) {
    for (let k = i + 2; k < blends.length && !pick; k++) {
      for (let j = i + 1; j < k && !pick; j++) {
        const threshold = Math.max(dist(blends[i], blends[j]), dist(blends[j], blends[k]))
        if (dist(blends[i], blends[k]) > threshold) pick = {first: blends[i], middle: blends[j], last: blends[k], threshold}
      }
    }
  }
  assert.ok(pick, 'some blend is within a threshold of two blends that are not within it of each other')
  return pick
}

test('gold: a new image that is a near-duplicate of images already in two splits is excluded (near_duplicate_conflict), so no chain straddles splits; --full regroups', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-bridge-')
  t.after(cleanup)
  const {first, middle, last, threshold} = await bridge(dir)
  // A seed that puts the two ends in different splits (each is its own group, named after itself).
  const ratios = {train: 0.5, val: 0.5, test: 0}
  const seed = Array.from({length: 64}, (_, i) => `seed-${i}`).find((s) => assignSplit(sha256(first.bytes), ratios, s) !== assignSplit(sha256(last.bytes), ratios, s))!
  const options = {nearDuplicateDistance: threshold, ratios, splitSeed: seed}

  const layout = new LakeLayout(path.join(dir, 'lake'))
  write(path.join(dir, 'ends'), [first, last])
  await ingest(layout, [path.join(dir, 'ends')])
  await etl(layout, options)
  const ends = await lakeRows(layout.root, 'SELECT DISTINCT split FROM gold.pairs')
  assert.equal(ends.length, 2, 'the ends are in different splits')

  write(path.join(dir, 'middle'), [middle])
  await ingest(layout, [path.join(dir, 'middle')])
  const bridged = await etl(layout, options)
  assert.deepEqual(bridged.rejects, {near_duplicate_conflict: 1})
  const excluded = await lakeRows(layout.root, 'SELECT sha256, reason, detail FROM gold.excluded')
  assert.deepEqual(excluded.map((r) => [r.sha256, r.reason]), [[sha256(middle.bytes), 'near_duplicate_conflict']])
  assert.match(excluded[0].detail, /near-duplicate of images gold already holds in train and val; etl run gold --full regroups/)
  assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM gold.pairs'), 2)

  // Another caption of the middle image, found later: it is still a near-duplicate of both
  // ends, so it stays out too (it used to enter gold in one end's split, beside the other).
  write(path.join(dir, 'middle-again'), [{...middle, caption: 'the same middle blend, captioned again'}])
  await ingest(layout, [path.join(dir, 'middle-again')])
  const recaptioned = await etl(layout, options)
  assert.deepEqual([recaptioned.rowsIn, recaptioned.rejects], [1, {near_duplicate_conflict: 1}])
  assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM gold.pairs'), 2, 'only the ends are in gold')

  const full = await runGold(layout, {...options, full: true})
  assert.equal(full.status, 'succeeded')
  const regrouped = await lakeRows(layout.root, 'SELECT count(*) AS n, count(DISTINCT split) AS splits, count(DISTINCT group_id) AS groups FROM gold.pairs')
  assert.deepEqual(regrouped.map((r) => [Number(r.n), Number(r.splits), Number(r.groups)]), [[4, 1, 1]], 'one group, one split')
})

test('gold: a new image bridging a group gold only excluded and a group in gold.pairs takes the split of the one in gold.pairs', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-bridge-excluded-')
  t.after(cleanup)
  const {first, middle, last, threshold} = await bridge(dir)
  // The end with the smaller sha256 gets a caption too short for gold: its group has no split,
  // but its id is the smaller one of the two groups the middle image joins.
  const [excludedEnd, includedEnd] = [first, last].sort((x, y) => (sha256(x.bytes) < sha256(y.bytes) ? -1 : 1)) as [Fixture, Fixture]
  const ratios = {train: 0.5, val: 0.5, test: 0}
  const seed = Array.from({length: 64}, (_, i) => `seed-${i}`).find((s) => assignSplit(sha256(excludedEnd.bytes), ratios, s) !== assignSplit(sha256(includedEnd.bytes), ratios, s))!
  const options = {nearDuplicateDistance: threshold, ratios, splitSeed: seed, filters: {minWords: 2}}

  const layout = new LakeLayout(path.join(dir, 'lake'))
  write(path.join(dir, 'ends'), [{...excludedEnd, caption: 'blobs'}, includedEnd])
  await ingest(layout, [path.join(dir, 'ends')])
  assert.deepEqual((await etl(layout, options)).rejects, {min_words: 1})
  const endSplit = (await lakeRows(layout.root, 'SELECT split FROM gold.pairs'))[0]!.split

  write(path.join(dir, 'middle'), [middle])
  await ingest(layout, [path.join(dir, 'middle')])
  const bridged = await etl(layout, options)
  assert.deepEqual([bridged.rowsIn, bridged.rejects], [1, {}])
  const joined = (await lakeRows(layout.root, `SELECT split, group_id FROM gold.pairs WHERE sha256 = '${sha256(middle.bytes)}'`))[0]!
  assert.deepEqual([joined.split, joined.group_id], [endSplit, sha256(includedEnd.bytes)], 'the middle image joins its near-duplicate in gold.pairs, in its split')

  // A caption long enough for the excluded end, later: it joins the same group and split.
  write(path.join(dir, 'end-again'), [{...excludedEnd, caption: 'the excluded end, captioned properly'}])
  await ingest(layout, [path.join(dir, 'end-again')])
  assert.deepEqual((await etl(layout, options)).added, {'gold.pairs': 1})
  const rows = await lakeRows(layout.root, 'SELECT DISTINCT split, group_id FROM gold.pairs')
  assert.deepEqual(rows.map((r) => [r.split, r.group_id]), [[endSplit, sha256(includedEnd.bytes)]], 'three near-copies, one group, one split')
  await assertNoGroupStraddles(layout.root)
})

test('gold --dedupe keeps the largest original of a group, not a sharper thumbnail or re-encode, among those that pass the filters', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-dedupe-')
  t.after(cleanup)
  // The same picture as a large PNG, a small PNG (its derivative is the sharper one) and a
  // JPEG q30 re-encode of the large one (same pixels, smaller file, blocking adds "sharpness").
  const largeBytes = await blobImage(5, {width: 200, height: 150})
  const large: Fixture = {rel: 'large.png', bytes: largeBytes, caption: 'a large picture of blobs'}
  const small: Fixture = {rel: 'small.png', bytes: await blobImage(5, {width: 120, height: 90}), caption: 'a small picture of blobs'}
  const reencoded: Fixture = {rel: 'reencoded.jpg', bytes: await sharp(largeBytes).jpeg({quality: 30}).toBuffer(), caption: 'a re-encoded picture of blobs'}
  const layout = new LakeLayout(path.join(dir, 'lake'))
  write(path.join(dir, 'in'), [large, small, reencoded])
  await ingest(layout, [path.join(dir, 'in')])
  await etl(layout, {dedupe: true})
  const sharpness = new Map((await lakeRows(layout.root, 'SELECT sha256, sharpness FROM silver.images')).map((r) => [r.sha256, Number(r.sharpness)]))
  assert.ok(sharpness.get(sha256(small.bytes))! > sharpness.get(sha256(large.bytes))!, 'the fixture: the small copy is sharper')
  assert.ok(reencoded.bytes.length < large.bytes.length, 'the fixture: the re-encode is the smaller file')
  const kept = async () => (await lakeRows(layout.root, 'SELECT sha256 FROM gold.pairs')).map((r) => r.sha256)
  assert.equal(await lakeCount(layout.root, `SELECT count(DISTINCT group_id) FROM gold.excluded`), 1, 'one group of three')
  assert.deepEqual(await kept(), [sha256(large.bytes)], 'the largest original is kept')
  const excluded = await lakeRows(layout.root, 'SELECT sha256, reason, detail FROM gold.excluded ORDER BY sha256')
  assert.deepEqual(excluded.map((r) => r.sha256), [sha256(small.bytes), sha256(reencoded.bytes)].sort())
  assert.ok(excluded.every((r) => r.reason === 'near_duplicate' && String(r.detail).endsWith(`keeps ${sha256(large.bytes)}`)))

  // Between the two large copies, only the re-encode passes --min-sharpness: it is kept, not neither.
  const floor = (sharpness.get(sha256(large.bytes))! + sharpness.get(sha256(reencoded.bytes))!) / 2
  assert.ok(sharpness.get(sha256(reencoded.bytes))! > floor, 'the fixture: the re-encode is the sharper of the two')
  const rebuilt = await runGold(layout, {dedupe: true, full: true, filters: {minSharpness: floor, minSide: 100}})
  assert.deepEqual(rebuilt.rejects, {min_sharpness: 1, min_side: 1})
  assert.deepEqual(await kept(), [sha256(reencoded.bytes)])
})
