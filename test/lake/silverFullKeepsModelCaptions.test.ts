import assert from 'node:assert/strict'
import path from 'node:path'
import {test} from 'node:test'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runSilver} from '../../src/lake/silver.js'
import {lakeRows, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'
import {commitModelCaption} from '../helpers/modelCaption.js'

// Model captions cost model time and are not derived from bronze: a silver rebuild must keep them.
test('etl run silver --full carries model captions into the rebuilt silver.captions unchanged', async () => {
  const {dir, cleanup} = tempDir()
  try {
    const layout = new LakeLayout(path.join(dir, 'lake'))
    await writeImageFolder(path.join(dir, 'in'), 4, {captionEvery: 1})
    await ingest(layout, [path.join(dir, 'in')])
    await runSilver(layout, {normalize: {minSide: 4}}) // the fixture images are 16 px
    const [image] = await lakeRows(layout.root, `SELECT sha256 FROM silver.images WHERE status = 'ok' ORDER BY sha256 LIMIT 1`)

    // A model caption as the caption stage writes it, through the real commit path.
    await commitModelCaption(layout, image.sha256, 'model-caption-1')
    const modelBefore = await lakeRows(layout.root, `SELECT * EXCLUDE (commit_id) FROM silver.captions WHERE source = 'model'`)
    const humanBefore = await lakeRows(layout.root, `SELECT caption_id FROM silver.captions WHERE source = 'human' ORDER BY 1`)
    assert.equal(modelBefore.length, 1, 'the model caption was committed')
    assert.ok(humanBefore.length > 0, 'silver has human captions to rebuild')

    const summary = await runSilver(layout, {full: true, normalize: {minSide: 4, maxSide: 8}})
    assert.equal(summary.status, 'succeeded')

    const modelAfter = await lakeRows(layout.root, `SELECT * EXCLUDE (commit_id) FROM silver.captions WHERE source = 'model'`)
    assert.deepEqual(modelAfter, modelBefore)
    const humanAfter = await lakeRows(layout.root, `SELECT caption_id FROM silver.captions WHERE source = 'human' ORDER BY 1`)
    assert.deepEqual(humanAfter, humanBefore)
    const [dupes] = await lakeRows(layout.root, `SELECT count(*) - count(DISTINCT caption_id) AS n FROM silver.captions`)
    assert.equal(Number(dupes.n), 0)
    const [side] = await lakeRows(layout.root, `SELECT max(greatest(normalized_width, normalized_height)) AS s FROM silver.images`)
    assert.equal(Number(side.s), 8, 'the rebuild applied the new parameters')
  } finally {
    cleanup()
  }
})
