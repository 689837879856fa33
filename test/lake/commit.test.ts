/**
 * The commit protocol, tested on the core directly (real DuckDB, real files):
 * exactly-once by key (across commits, inside a batch, across processes), readers see only
 * committed files, a committed-but-not-promoted file is rolled forward by the next reader,
 * and a lake that is missing or too new is refused with its code.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'

import {commitBatch} from '../../src/lake/commit.js'
import {ensureCatalog, withCatalog} from '../../src/lake/catalog.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {LakeReader} from '../../src/lake/reader.js'
import {beginRun} from '../../src/lake/runs.js'
import {StagedBatch} from '../../src/lake/staging.js'
import {lakeRows, plainFolderCount, REPO_ROOT, tempDir} from '../helpers/lakeFixtures.js'

async function newLake(): Promise<{layout: LakeLayout; runId: string; cleanup: () => void}> {
  const {dir, cleanup} = tempDir('mlcap-commit-')
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ensureCatalog(layout)
  const run = await beginRun(layout, 'ingest', {})
  return {layout, runId: run.runId, cleanup}
}

function imageBatch(layout: LakeLayout, runId: string, rows: Array<[string, number]>): StagedBatch {
  const batch = new StagedBatch(layout)
  for (const [sha256, bytes] of rows) batch.add('bronze.images', {sha256, bytes, format: 'png', width: 1, height: 1, run_id: runId})
  return batch
}

const count = async (layout: LakeLayout, sql: string) => Number(Object.values((await lakeRows(layout.root, sql))[0])[0])

test('committing the same keys twice: the second commit is null and adds nothing', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    const first = await commitBatch(layout, imageBatch(layout, runId, [['a', 1], ['b', 2], ['c', 3]]), {operation: 'test', runId})
    assert.equal(first.commitId, 1)
    assert.deepEqual(first.added, {'bronze.images': 3})
    const filesBefore = readdirSync(layout.tableDir('bronze.images'))

    const second = await commitBatch(layout, imageBatch(layout, runId, [['c', 30], ['b', 20], ['a', 10]]), {operation: 'test', runId})
    assert.equal(second.commitId, null)
    assert.deepEqual(second.added, {'bronze.images': 0})
    assert.deepEqual(second.staged, {'bronze.images': 3})

    // A partial overlap adds only the new key.
    const third = await commitBatch(layout, imageBatch(layout, runId, [['a', 100], ['d', 4]]), {operation: 'test', runId})
    assert.equal(third.commitId, 2)
    assert.deepEqual(third.added, {'bronze.images': 1})

    assert.equal(readdirSync(layout.tableDir('bronze.images')).length, filesBefore.length + 1, 'the null commit wrote no data file')
    assert.deepEqual(readdirSync(layout.stagingDir), [], 'every batch folder is gone')
    const rows = await lakeRows(layout.root, 'SELECT sha256, bytes, commit_id FROM bronze.images ORDER BY sha256')
    assert.deepEqual(rows, [
      {sha256: 'a', bytes: 1, commit_id: 1},
      {sha256: 'b', bytes: 2, commit_id: 1},
      {sha256: 'c', bytes: 3, commit_id: 1},
      {sha256: 'd', bytes: 4, commit_id: 2},
    ].map((r) => ({...r, bytes: String(r.bytes), commit_id: String(r.commit_id)})))
    assert.equal(await count(layout, 'SELECT count(*) FROM lake.commits'), 2)
    const commits = await lakeRows(layout.root, 'SELECT commits FROM lake.runs')
    assert.deepEqual(commits[0].commits.map(Number), [1, 2], 'the run lists its commits')
  } finally {
    cleanup()
  }
})

test('duplicate keys inside one batch: one row, the first occurrence', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    const result = await commitBatch(layout, imageBatch(layout, runId, [['x', 1], ['y', 2], ['x', 3], ['x', 4], ['y', 5]]), {operation: 'test', runId})
    assert.deepEqual(result.added, {'bronze.images': 2})
    assert.deepEqual(
      (await lakeRows(layout.root, 'SELECT sha256, bytes FROM bronze.images ORDER BY sha256')).map((r) => [r.sha256, Number(r.bytes)]),
      [['x', 1], ['y', 2]],
    )
  } finally {
    cleanup()
  }
})

test('readers see only committed files: staged rows and stray parquet files are invisible', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    const batch = imageBatch(layout, runId, [['s1', 1], ['s2', 2]])
    batch.flush()
    assert.ok(existsSync(batch.rowsFile('bronze.images')), 'rows are staged on disk')
    // A parquet file dropped into the table folder by someone else is not part of the table.
    mkdirSync(layout.tableDir('bronze.images'), {recursive: true})
    const stray = path.join(layout.tableDir('bronze.images'), 'stray.parquet')
    const db = await DuckDBInstance.create(':memory:')
    const c = await db.connect()
    await c.run(`COPY (SELECT 'zzz' AS sha256, 9::BIGINT AS bytes) TO '${stray}' (FORMAT parquet)`)
    c.closeSync()
    db.closeSync()

    const before = await LakeReader.open(layout)
    try {
      assert.equal(before.snapshot.commitId, 0)
      assert.equal(Number((await before.connection.runAndReadAll('SELECT count(*) FROM bronze.images')).getRows()[0][0]), 0)
      await commitBatch(layout, batch, {operation: 'test', runId})
      // A reader keeps its snapshot: the commit that landed meanwhile is not half-visible.
      assert.equal(Number((await before.connection.runAndReadAll('SELECT count(*) FROM bronze.images')).getRows()[0][0]), 0)
    } finally {
      before.close()
    }
    assert.deepEqual((await lakeRows(layout.root, 'SELECT sha256 FROM bronze.images ORDER BY 1')).map((r) => r.sha256), ['s1', 's2'])
  } finally {
    cleanup()
  }
})

test('a committed file that was not yet moved into place is rolled forward by the next reader', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    await commitBatch(layout, imageBatch(layout, runId, [['r1', 1], ['r2', 2]]), {operation: 'test', runId})
    const [file] = await lakeRows(layout.root, 'SELECT path, staged_path FROM lake.files')
    // Simulate a crash between the catalog commit and the rename: the file is still staged.
    mkdirSync(path.dirname(file.staged_path), {recursive: true})
    renameSync(file.path, file.staged_path)
    assert.ok(!existsSync(file.path))

    const reader = await LakeReader.open(layout)
    try {
      assert.ok(existsSync(file.path), 'the reader moved the committed file into place')
      assert.ok(!existsSync(file.staged_path))
      assert.equal(Number((await reader.connection.runAndReadAll('SELECT count(*) FROM bronze.images')).getRows()[0][0]), 2)
    } finally {
      reader.close()
    }

    // Gone from both places: corruption, reported with its own code rather than silently empty.
    renameSync(file.path, path.join(path.dirname(layout.root), 'elsewhere.parquet'))
    await assert.rejects(LakeReader.open(layout), (error: any) => {
      assert.equal(error.code, 'LAKE_CORRUPT')
      assert.match(error.message, /missing on disk/)
      assert.ok(error.message.includes(file.path))
      return true
    })
  } finally {
    cleanup()
  }
})

test('files a replacing commit retired but did not yet move out are moved to _retired/ by the next reader', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    await commitBatch(layout, imageBatch(layout, runId, [['old1', 1], ['old2', 2]]), {operation: 'test', runId})
    const [old] = await lakeRows(layout.root, 'SELECT path FROM lake.files')
    // A --full rebuild: the same commit retires the old file and adds the new one.
    await commitBatch(layout, imageBatch(layout, runId, [['new1', 1], ['new2', 2], ['new3', 3]]), {operation: 'test', runId, replaceTables: ['bronze.images']})
    const retiredCopy = path.join(layout.retiredDir, path.relative(layout.root, old.path))
    assert.ok(existsSync(retiredCopy) && !existsSync(old.path), 'the commit moved the retired file out')
    // Simulate a kill between the catalog commit and the move: the old file is back in the table folder.
    renameSync(retiredCopy, old.path)
    const folder = layout.tableDir('bronze.images')
    assert.equal(await plainFolderCount(folder), 5, 'before recovery a plain-folder reader sees old and new rows')
    // An unknown file in the table folder is not the reader's to move (gc decides about it).
    const stranger = path.join(folder, 'not-in-the-catalog.txt')
    writeFileSync(stranger, 'x')

    const reader = await LakeReader.open(layout)
    try {
      assert.ok(!existsSync(old.path), 'the reader finished the retirement')
      assert.ok(existsSync(retiredCopy))
      assert.ok(existsSync(stranger), 'a file the catalog does not list stays')
      assert.equal(Number((await reader.connection.runAndReadAll('SELECT count(*) FROM bronze.images')).getRows()[0][0]), 3)
    } finally {
      reader.close()
    }
    rmSync(stranger)
    assert.equal(await plainFolderCount(folder), 3, 'a plain-folder reader sees only the new rows')
  } finally {
    cleanup()
  }
})

test('a catalog with a newer format version is refused with LAKE_TOO_NEW and left untouched', async () => {
  const {layout, runId, cleanup} = await newLake()
  try {
    await commitBatch(layout, imageBatch(layout, runId, [['v', 1]]), {operation: 'test', runId})
    const setVersion = async (value: string) => {
      const db = await DuckDBInstance.create(layout.catalogPath)
      const c = await db.connect()
      try {
        await c.run(`UPDATE meta SET value = '${value}' WHERE key = 'format_version'`)
        return (await c.runAndReadAll('SELECT table_name FROM duckdb_tables() ORDER BY 1')).getRows().map((r) => String(r[0]))
      } finally {
        c.closeSync()
        db.closeSync()
      }
    }
    const tables = await setVersion('99')
    const tooNew = (error: any) => {
      assert.equal(error.code, 'LAKE_TOO_NEW')
      assert.match(error.message, /format version 99/)
      assert.match(error.hint, /[Uu]pgrade mlcap/)
      return true
    }
    await assert.rejects(LakeReader.open(layout), tooNew)
    await assert.rejects(ensureCatalog(layout), tooNew)
    await assert.rejects(withCatalog(layout, async () => 'ran'), tooNew)
    await assert.rejects(commitBatch(layout, imageBatch(layout, runId, [['w', 2]]), {operation: 'test', runId}), tooNew)
    // Nothing was written: still version 99, no table created, no commit added.
    assert.deepEqual(await setVersion('99'), tables)
    await setVersion('1')
    assert.equal(await count(layout, 'SELECT count(*) FROM lake.commits'), 1)
  } finally {
    cleanup()
  }
})

test('a missing lake is LAKE_NOT_FOUND, and reading does not create one', async () => {
  const {dir, cleanup} = tempDir('mlcap-commit-')
  try {
    const layout = new LakeLayout(path.join(dir, 'no-lake-here'))
    const notFound = (error: any) => {
      assert.equal(error.code, 'LAKE_NOT_FOUND')
      assert.ok(error.message.includes(layout.root))
      assert.match(error.hint, /mlcap ingest/)
      return true
    }
    await assert.rejects(LakeReader.open(layout), notFound)
    await assert.rejects(withCatalog(layout, async () => 'ran'), notFound)
    assert.ok(!existsSync(layout.root))
  } finally {
    cleanup()
  }
})

test('three processes committing overlapping keys at once add every key exactly once', async () => {
  const {dir, cleanup} = tempDir('mlcap-commit-')
  try {
    const lake = path.join(dir, 'lake')
    const worker = path.join(REPO_ROOT, 'test', 'helpers', 'commitWorker.ts')
    const ranges: Array<[number, number]> = [
      [0, 300],
      [150, 450],
      [0, 450],
    ]
    // Create the catalog first so the workers race on commits, not on creating it.
    await ensureCatalog(new LakeLayout(lake))
    const outputs = await Promise.all(
      ranges.map(
        ([from, to]) =>
          new Promise<{code: number | null; stdout: string; stderr: string}>((resolve, reject) => {
            const child = spawn(process.execPath, ['--import', 'tsx', worker, lake, String(from), String(to), '25'], {cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe']})
            let stdout = ''
            let stderr = ''
            child.stdout.on('data', (d) => (stdout += d))
            child.stderr.on('data', (d) => (stderr += d))
            child.on('error', reject)
            child.on('close', (code) => resolve({code, stdout, stderr}))
          }),
      ),
    )
    const commitIds: number[] = []
    let added = 0
    for (const out of outputs) {
      assert.equal(out.code, 0, out.stderr)
      const results = JSON.parse(out.stdout) as Array<{commitId: number | null; added: number}>
      for (const r of results) {
        if (r.commitId === null) assert.equal(r.added, 0)
        else commitIds.push(r.commitId)
        added += r.added
      }
    }
    assert.equal(added, 450, 'the processes together added each key once')
    assert.equal(new Set(commitIds).size, commitIds.length, 'no commit id was handed out twice')
    const [stats] = await lakeRows(lake, 'SELECT count(*) AS n, count(DISTINCT sha256) AS d, min(sha256) AS lo, max(sha256) AS hi FROM bronze.images')
    assert.deepEqual(stats, {n: '450', d: '450', lo: 'key-000000', hi: 'key-000449'})
    assert.equal(Number((await lakeRows(lake, 'SELECT count(*) AS n FROM lake.commits'))[0].n), commitIds.length)
    assert.deepEqual(readdirSync(path.join(lake, '_staging')), [])
  } finally {
    cleanup()
  }
})

test('a process killed while creating a lake leaves no catalog or a whole one, never a broken one', async () => {
  const {dir, cleanup} = tempDir('mlcap-commit-')
  try {
    const worker = path.join(REPO_ROOT, 'test', 'helpers', 'createLakeLoop.ts')
    const bases = [0, 1, 2, 3].map((i) => path.join(dir, `base-${i}`))
    await Promise.all(
      bases.map(
        (base) =>
          new Promise<void>((resolve, reject) => {
            const child = spawn(process.execPath, ['--import', 'tsx', worker, base], {cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit']})
            child.on('error', reject)
            child.on('close', () => resolve())
            child.stdout.once('data', () => setTimeout(() => child.kill('SIGKILL'), 300 + Math.random() * 700))
          }),
      ),
    )
    let lakes = 0
    for (const base of bases) {
      // The lake in flight at the kill, and the one before it (earlier ones were finished).
      const names = (existsSync(base) ? readdirSync(base) : []).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
      for (const name of names.slice(-2)) {
        const layout = new LakeLayout(path.join(base, name))
        lakes++
        if (!existsSync(layout.catalogPath)) {
          await assert.rejects(LakeReader.open(layout), {code: 'LAKE_NOT_FOUND'})
        } else {
          const reader = await LakeReader.open(layout)
          assert.equal(reader.snapshot.commitId, 0, name)
          reader.close()
        }
        // Either way the next command can create or use it.
        await ensureCatalog(layout)
        await commitBatch(layout, imageBatch(layout, 'r', [['k', 1]]), {operation: 'test', runId: 'r'})
        assert.equal(await count(layout, 'SELECT count(*) FROM bronze.images'), 1)
      }
    }
    assert.ok(lakes >= 1)
  } finally {
    cleanup()
  }
})

