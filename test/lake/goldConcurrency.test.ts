/**
 * Promise 3 (many processes at once) for gold: two incremental gold runs that overlap must
 * not undo each other's near-duplicate grouping. Gold decides a new image's group (and so
 * its split) from the groups gold already holds; a run that read gold before another run
 * committed, and commits after it, would otherwise put near-duplicates in different groups,
 * and so possibly in different splits (a train/test leak) or both through --dedupe.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {runGold} from '../../src/lake/gold.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {hammingDistance, hexToHash} from '../../src/lake/perceptualHash.js'
import {runSilver} from '../../src/lake/silver.js'
import {blobImage, CLI, collect, lakeRows, REPO_ROOT, tempDir} from '../helpers/lakeFixtures.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

test('two overlapping incremental gold runs keep near-duplicates in one group', {timeout: 120_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-gold-race-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  // Two encodings of one picture: near-duplicates with different bytes. The run that sees
  // only one of them names its group after it; the one that sees both names the group after
  // the smaller SHA-256. Let `late` be the smaller, so the two runs disagree.
  const pair = [await blobImage(5), await blobImage(5, {format: 'jpeg', quality: 80})]
  const [late, early] = [...pair].sort((a, b) => sha256(a).localeCompare(sha256(b)))
  const put = (name: string, bytes: Buffer) => {
    const folder = path.join(dir, name)
    mkdirSync(folder)
    writeFileSync(path.join(folder, bytes[0] === 0x89 ? 'image.png' : 'image.jpg'), bytes)
    writeFileSync(path.join(folder, 'image.txt'), `a picture of coloured blobs (${name})`)
    return folder
  }
  await ingest(layout, [put('early', early)])
  await runSilver(layout)
  await ingest(layout, [put('late', late)]) // in bronze, not yet in silver

  const markers = path.join(dir, 'markers')
  mkdirSync(markers)
  let other: Promise<{code: number | null; stdout: string; stderr: string}> | undefined
  const pause = new Int32Array(new SharedArrayBuffer(4))
  // Run A reads gold (empty) and silver (early only). Before it commits: silver takes `late`,
  // and run B reads the lake (both images, gold still empty) and holds before its commit.
  const a = await runGold(layout, {
    onProgress: () => {
      if (other) return
      execFileSync(process.execPath, [CLI, 'etl', 'run', 'silver', '--lake', layout.root], {stdio: 'ignore'})
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/helpers/goldPauseWorker.ts'), layout.root, markers], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      other = collect(child, Date.now(), {timeoutMs: 90_000})
      const deadline = Date.now() + 60_000
      while (!existsSync(path.join(markers, 'read')) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20)
      assert.ok(existsSync(path.join(markers, 'read')), 'the second gold run did not reach its first pair')
    },
  })
  assert.deepEqual(a.added, {'gold.pairs': 1}) // A commits first: `early` in a group of its own
  writeFileSync(path.join(markers, 'go'), '')
  const b = await other!
  assert.equal(b.code, 0, b.stdout + b.stderr)
  // B's first attempt was refused (A changed gold after B read it) and B started over.
  assert.deepEqual(JSON.parse(b.stdout).added, {'gold.pairs': 1})
  const refused = await lakeRows(layout.root, `SELECT error FROM lake.runs WHERE stage = 'gold' AND status = 'failed'`)
  assert.equal(refused.length, 1)
  assert.match(refused[0].error, /gold\.pairs, gold\.excluded changed after commit \d+ \(commit \d+ of run gold-/)

  const images = await lakeRows(layout.root, `SELECT sha256, phash FROM silver.images ORDER BY sha256`)
  assert.equal(images.length, 2)
  assert.ok(hammingDistance(hexToHash(images[0].phash), hexToHash(images[1].phash)) <= 8, 'the fixture images should be near-duplicates')
  const pairs = await lakeRows(layout.root, `SELECT sha256, group_id, split FROM gold.pairs ORDER BY sha256`)
  assert.equal(pairs.length, 2)
  assert.equal(pairs[0].group_id, pairs[1].group_id, `near-duplicates in two groups: ${JSON.stringify(pairs)}`)
  assert.equal(pairs[0].split, pairs[1].split)
})
