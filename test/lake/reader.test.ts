/**
 * LakeReader's `tables` option (export's reader): views of the named tables only, over the
 * same snapshot as a full reader.
 */
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {LakeReader} from '../../src/lake/reader.js'
import {tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

let layout: LakeLayout
let cleanup: () => void

before(async () => {
  let dir: string
  ;({dir, cleanup} = tempDir('mlcap-reader-'))
  await writeImageFolder(path.join(dir, 'photos'), 3, {captionEvery: 1})
  layout = new LakeLayout(path.join(dir, 'lake'))
  await ingest(layout, [path.join(dir, 'photos')])
})

after(() => cleanup())

test('a reader of some tables sees the same snapshot as a full reader, and views of those tables only', async () => {
  const full = await LakeReader.open(layout)
  const some = await LakeReader.open(layout, {tables: ['bronze.images'], threads: 1})
  try {
    assert.ok(full.snapshot.commitId > 0)
    assert.equal(some.snapshot.commitId, full.snapshot.commitId)
    assert.deepEqual([...some.snapshot.files], [...full.snapshot.files])
    const count = async (reader: LakeReader, table: string) => Number((await reader.connection.runAndReadAll(`SELECT count(*) FROM ${table}`)).getRows()[0][0])
    assert.equal(await count(some, 'bronze.images'), 3)
    assert.equal(await count(some, 'bronze.images'), await count(full, 'bronze.images'))
    assert.equal(await count(full, 'lake.commits'), full.snapshot.commitId)
    for (const table of ['bronze.captions', 'lake.commits', 'lake.runs']) {
      await assert.rejects(count(some, table), /does not exist/, table)
    }
  } finally {
    full.close()
    some.close()
    some.close() // closing twice is allowed (export closes its reader early and again on the way out)
  }
})
