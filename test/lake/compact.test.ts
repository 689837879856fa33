/**
 * Compaction: many small files become one, in one commit, with every row, key and commit id
 * unchanged; replaced files leave the table folder (plain-folder readers never see a row
 * twice) for `_retired/`, which gc empties after its min age; readers that took their
 * snapshot before the compaction still get their answer.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {existsSync, readdirSync} from 'node:fs'
import path from 'node:path'

import {compactLake, compactTable, groupFiles} from '../../src/lake/compact.js'
import {collectGarbage} from '../../src/lake/gc.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {QuerySession} from '../../src/lake/query.js'
import {LakeReader, withLakeReader} from '../../src/lake/reader.js'
import {assertLakeConsistent, lakeCount, lakeRows, parseJson, plainFolderCount, runCli, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

/** A lake with `commits` ingest commits of 3 images (+ captions) each: many small files. */
async function smallFileLake(dir: string, commits: number): Promise<LakeLayout> {
  const layout = new LakeLayout(path.join(dir, 'lake'))
  for (let i = 0; i < commits; i++) {
    const folder = path.join(dir, `in${i}`)
    await writeImageFolder(folder, 3, {firstSeed: i * 10, captionEvery: 2})
    await ingest(layout, [folder])
  }
  return layout
}

const parquetIn = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.parquet')) : [])

test('compactTable merges small files into one commit; rows, keys and commit ids unchanged; old files go to _retired', async () => {
  const {dir, cleanup} = tempDir('mlcap-compact-')
  try {
    const layout = await smallFileLake(dir, 6)
    const table = layout.tableDir('bronze.sources')
    const before = await lakeRows(layout.root, 'SELECT * FROM bronze.sources ORDER BY path')
    const liveFiles = async () => Number((await lakeRows(layout.root, "SELECT count(*) AS n FROM lake.files WHERE table_name = 'bronze.sources' AND removed_commit IS NULL"))[0].n)
    assert.equal(await liveFiles(), 6, 'the catalog lists the six small files')
    assert.equal(parquetIn(table).length, 6)
    // A reader and a query session opened before the compaction.
    const oldReader = await LakeReader.open(layout)
    const oldSession = await QuerySession.open(layout)
    try {
      const outcome = await compactTable(layout, 'bronze.sources', {minFiles: 2})
      assert.equal(outcome.filesBefore, 6)
      assert.equal(outcome.filesAfter, 1)
      assert.equal(outcome.rows, 18)
      assert.ok(outcome.commitId !== null)

      assert.deepEqual(await lakeRows(layout.root, 'SELECT * FROM bronze.sources ORDER BY path'), before, 'same rows, same commit_id per row')
      assert.equal(parquetIn(table).length, 1)
      assert.equal(await plainFolderCount(table), 18, 'a plain-folder reader sees every row once')
      assert.equal(parquetIn(path.join(layout.retiredDir, 'bronze', 'sources')).length, 6)
      const commit = await lakeRows(layout.root, `SELECT operation FROM lake.commits WHERE commit_id = ${outcome.commitId}`)
      assert.equal(commit[0].operation, 'compact')
      assert.equal(await liveFiles(), 1, 'the catalog lists only the merged file')
      await assertLakeConsistent(layout.root, assert)

      // The old snapshot's files moved: the session retries on a fresh snapshot.
      const result = await oldSession.run('select count(*) as n from bronze.sources')
      assert.equal(result.rows[0].n, 18)
      assert.equal(result.commitId, outcome.commitId)
      await assert.rejects(oldReader.connection.runAndReadAll('select count(*) from bronze.sources'), /No files found/)
      assert.equal(await withLakeReader(layout, async (r) => Number((await r.connection.runAndReadAll('select count(*) from bronze.sources')).getRows()[0][0])), 18)

      // Re-ingesting after compaction still adds nothing (the keys were kept).
      const again = await ingest(layout, [path.join(dir, 'in0'), path.join(dir, 'in5')], {rehash: true})
      assert.equal(again.commits.length, 0)
    } finally {
      oldReader.close()
      oldSession.close()
    }

    // gc keeps retired files younger than its min age, then deletes them.
    const kept = await collectGarbage(layout, {})
    assert.equal(kept.removed.filter((i) => i.kind === 'retired_data_file').length, 0)
    const removed = await collectGarbage(layout, {minAgeMs: 0})
    assert.equal(removed.removed.filter((i) => i.kind === 'retired_data_file').length, 6)
    assert.equal(parquetIn(path.join(layout.retiredDir, 'bronze', 'sources')).length, 0)
    assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM bronze.sources'), 18)
  } finally {
    cleanup()
  }
})

test('compactLake leaves tables below minFiles alone, respects targetRows, and names unknown tables', async () => {
  const {dir, cleanup} = tempDir('mlcap-compact2-')
  try {
    const layout = await smallFileLake(dir, 4)
    const summary = await compactLake(layout, {minFiles: 5})
    assert.ok(summary.tables.every((t) => t.commitId === null))
    // targetRows 7 with 3-row files: groups of two files (6 rows) each.
    const grouped = await compactTable(layout, 'bronze.images', {minFiles: 2, targetRows: 7})
    assert.equal(grouped.filesBefore, 4)
    assert.equal(grouped.filesAfter, 2)
    assert.deepEqual(groupFiles([{rows: 3}, {rows: 3}, {rows: 3}], 7).map((g) => g.length), [2, 1])
    await assert.rejects(compactTable(layout, 'bronze.nope'), (e: Error) => /^compact: unknown table "bronze\.nope"; expected one of .*bronze\.sources/.test(e.message))
    await assertLakeConsistent(layout.root, assert)
  } finally {
    cleanup()
  }
})

test('mlcap compact --json reports per table; a second run finds nothing to do', async () => {
  const {dir, cleanup} = tempDir('mlcap-compact-cli-')
  try {
    const layout = await smallFileLake(dir, 3)
    const first = await runCli(['compact', '--lake', layout.root, '--json'])
    assert.equal(first.code, 0, first.stderr)
    const out = parseJson(first)
    assert.match(out.runId, /^compact-/)
    const sources = out.tables.find((t: {table: string}) => t.table === 'bronze.sources')
    assert.deepEqual([sources.filesBefore, sources.filesAfter, sources.rows], [3, 1, 9])
    const second = await runCli(['compact', '--lake', layout.root, '--table', 'bronze.sources'])
    assert.equal(second.code, 0, second.stderr)
    assert.match(second.stdout, /Nothing to compact/)
    await assertLakeConsistent(layout.root, assert)
  } finally {
    cleanup()
  }
})
