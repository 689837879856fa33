/**
 * `mlcap query` runs untrusted SQL: only one read-only statement, no file outside the lake,
 * nothing in the lake changed. Tested through the CLI (exit codes, messages, output
 * formats) and, for the many EXPLAIN spellings, on QuerySession directly.
 */
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {explainedStatement, QuerySession} from '../../src/lake/query.js'
import {listFiles, parseJson, runCli, tempDir, writeImageFolder, type CliResult} from '../helpers/lakeFixtures.js'

let dir: string
let lake: string
let cleanup: () => void

before(async () => {
  ;({dir, cleanup} = tempDir('mlcap-query-'))
  lake = path.join(dir, 'lake')
  await writeImageFolder(path.join(dir, 'photos'), 6, {captionEvery: 2})
  writeFileSync(path.join(dir, 'photos', 'img-0001.txt'), 'a caption, with "quotes"\nand a newline')
  await ingest(new LakeLayout(lake), [path.join(dir, 'photos')])
})

after(() => cleanup())

/** Content hash of every file of the lake that a query could damage (data files, objects). */
function lakeFingerprint(): Record<string, string> {
  const out: Record<string, string> = {}
  for (const rel of listFiles(lake)) {
    if (rel === 'catalog.duckdb' || rel.endsWith('.wal') || rel.startsWith('_staging/')) continue
    out[rel] = createHash('sha256').update(readFileSync(path.join(lake, rel))).digest('hex')
  }
  return out
}

/** Runs CLI invocations a few at a time (each is a process that loads DuckDB). */
async function runAll(argsList: string[][], parallel = 3): Promise<CliResult[]> {
  const results: CliResult[] = new Array(argsList.length)
  let next = 0
  await Promise.all(
    Array.from({length: parallel}, async () => {
      while (next < argsList.length) {
        const i = next++
        results[i] = await runCli(argsList[i])
      }
    }),
  )
  return results
}

const noStack = (r: CliResult) => assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, `stack trace printed:\n${r.stderr}`)

test('statements that could change something are refused with exit 2, and the lake is untouched', async () => {
  const target = path.join(lake, 'bronze', 'images', 'x.parquet')
  const before = lakeFingerprint()
  const refused: Array<[string, RegExp]> = [
    [`COPY (select 1) TO '${target}'`, /kind COPY/],
    [`EXPLAIN ANALYZE COPY (select 1) TO '${target}'`, /kind COPY/],
    [`ATTACH '${path.join(lake, 'other.duckdb')}' AS other`, /kind ATTACH/],
    [`INSTALL httpfs`, /kind LOAD/],
    [`LOAD parquet`, /kind LOAD/],
    [`SET enable_external_access = true`, /kind SET/],
    [`CREATE TABLE bronze.evil AS SELECT 1`, /kind CREATE/],
    [`INSERT INTO bronze.rejects (reason) VALUES ('x')`, /kind INSERT/],
    [`PRAGMA enable_profiling`, /kind PRAGMA/],
    [`PRAGMA threads = 1`, /kind SET/],
    [`select 1; select 2`, /exactly one statement but received 2/],
  ]
  const results = await runAll(refused.map(([sql]) => ['query', sql, '--lake', lake]))
  for (const [i, [sql, message]] of refused.entries()) {
    const r = results[i]
    assert.equal(r.code, 2, `${sql}: exit ${r.code}\n${r.stdout}${r.stderr}`)
    assert.match(r.stderr, message, sql)
    assert.match(r.stderr, /Error: query: /)
    assert.equal(r.stdout, '', `${sql} printed a result`)
    noStack(r)
  }
  assert.ok(!existsSync(target), 'the COPY target must not exist')
  assert.ok(!existsSync(path.join(lake, 'other.duckdb')))
  assert.deepEqual(lakeFingerprint(), before, 'no lake file may be created or changed')

  // --json: the error object, same exit code.
  const json = await runCli(['query', `COPY (select 1) TO '${target}'`, '--lake', lake, '--json'])
  assert.equal(json.code, 2)
  assert.deepEqual(Object.keys(parseJson(json).error).sort(), ['code', 'exitCode', 'hint', 'message'])
  assert.equal(parseJson(json).error.code, 'QUERY_NOT_READ_ONLY')
})

test('EXPLAIN is allowed only of a SELECT, however it is spelt', async () => {
  const session = await QuerySession.open(new LakeLayout(lake))
  const out = path.join(lake, 'explained.csv')
  try {
    for (const sql of [
      `EXPLAIN ANALYZE COPY (select 1) TO '${out}'`,
      `explain analyse copy (select 1) to '${out}'`,
      `EXPLAIN (ANALYZE false) COPY (select 1) TO '${out}'`,
      `EXPLAIN (FORMAT json, ANALYZE) COPY (select 1) TO '${out}'`,
      `/* c */ EXPLAIN -- c\n ANALYZE /* nested /* comment */ select 1 */ COPY (select 1) TO '${out}'`,
      `EXPLAIN COPY (select 1) TO '${out}'`,
      `EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1`,
      // DuckDB reads the options as (analyze) and runs the COPY; a scanner blind to comments saw `select 1`.
      `explain (analyze /*) select 1 -- */) copy (select 1) to '${out}'`,
    ]) {
      await assert.rejects(session.run(sql), (error: any) => {
        assert.equal(error.code, 'QUERY_NOT_READ_ONLY', `${sql}: ${error.message}`)
        assert.equal(error.exitCode, 2)
        return true
      })
    }
    assert.ok(!existsSync(out))
    for (const sql of ['EXPLAIN SELECT count(*) FROM bronze.images', 'explain analyze select 1', 'EXPLAIN (FORMAT json) SELECT 1']) {
      const result = await session.run(sql)
      assert.ok(result.rows.length >= 1, sql)
    }
    // --out takes any query that runs without it, a trailing line comment too.
    const saved = await session.runToFile('select 41 + 1 as x -- the answer', path.join(dir, 'commented.csv'))
    assert.equal(saved.rows, 1)
    // DuckDB allows its temp directory too: it must be inside the lake (the default, ./.tmp, is not).
    const allowed = (await session.run(`select unnest(current_setting('allowed_directories')) AS dir`)).rows.map((r) => String(r.dir))
    assert.ok(allowed.length >= 1 && allowed.every((d) => d.startsWith(lake + path.sep)), JSON.stringify(allowed))
  } finally {
    session.close()
  }
  assert.equal(explainedStatement('  /* a /* b */ c */ explain  analyze select 1'), ' select 1')
  assert.equal(explainedStatement('select 1'), null)
})

test('reading outside the lake fails with a message (exit 1), and unknown tables list the tables', async () => {
  const cases: Array<[string, RegExp]> = [
    [`select * from read_csv('/etc/passwd')`, /Permission Error: Cannot access file "\/etc\/passwd"/],
    [`select * from read_text('/etc/passwd')`, /Permission Error: Cannot access file "\/etc\/passwd"/],
    [`select * from read_parquet('${path.join(dir, 'photos', '*.parquet')}')`, /Permission Error/],
    [`select getenv('HOME')`, /getenv/],
  ]
  const results = await runAll([
    ...cases.map(([sql]) => ['query', sql, '--lake', lake]),
    ['query', 'select * from bronze.imagez', '--lake', lake],
    ['query', 'select * from lake.nothing', '--lake', lake],
    ['query', '   ', '--lake', lake],
  ])
  for (const [i, [sql, message]] of cases.entries()) {
    assert.equal(results[i].code, 1, `${sql}: ${results[i].stdout}${results[i].stderr}`)
    assert.match(results[i].stderr, message, sql)
    assert.doesNotMatch(results[i].stdout, /root:/)
    noStack(results[i])
  }
  for (const r of results.slice(cases.length, cases.length + 2)) {
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /does not exist/)
    assert.match(r.stderr, /Hint: Tables: .*bronze\.images.*bronze\.captions|Hint: Tables: .*bronze\.captions.*bronze\.images/)
    assert.match(r.stderr, /lake\.commits/)
    noStack(r)
  }
  const empty = results[cases.length + 2]
  assert.equal(empty.code, 2)
  assert.match(empty.stderr, /empty/)
})

test('--format json, jsonl and csv print the rows; --json returns columns, rows and the commit', async () => {
  const sql = 'select sha256, text, 42 as n from bronze.captions order by sha256'
  const [json, jsonl, csv, table, envelope] = await runAll([
    ['query', sql, '--lake', lake, '--format', 'json'],
    ['query', sql, '--lake', lake, '--format', 'jsonl'],
    ['query', sql, '--lake', lake, '--format', 'csv'],
    ['query', sql, '--lake', lake],
    ['query', sql, '--lake', lake, '--json'],
  ])
  for (const r of [json, jsonl, csv, table, envelope]) assert.equal(r.code, 0, r.stderr)
  const rows = JSON.parse(json.stdout) as Array<{sha256: string; text: string; n: number}>
  assert.equal(rows.length, 4)
  assert.ok(rows.some((r) => r.text === 'a caption, with "quotes"\nand a newline'), 'raw text survives')
  assert.ok(rows.every((r) => r.n === 42 && /^[0-9a-f]{64}$/.test(r.sha256)))
  assert.deepEqual(jsonl.stdout.trim().split('\n').map((l) => JSON.parse(l)), rows)

  // CSV: header + rows, RFC 4180 quoting (read back with DuckDB's own CSV reader).
  const csvFile = path.join(dir, 'printed.csv')
  writeFileSync(csvFile, csv.stdout)
  assert.deepEqual(await readWithDuckDb(`SELECT sha256, text, n::INTEGER AS n FROM read_csv('${csvFile}', header = true) ORDER BY sha256`), rows)

  assert.match(table.stdout, /sha256\s+text\s+n/)
  assert.match(table.stdout, /\(4 rows\)/)

  const body = parseJson(envelope)
  assert.deepEqual(Object.keys(body).sort(), ['columns', 'commitId', 'rows'])
  assert.deepEqual(body.columns, [
    {name: 'sha256', type: 'VARCHAR'},
    {name: 'text', type: 'VARCHAR'},
    {name: 'n', type: 'INTEGER'},
  ])
  assert.deepEqual(body.rows, rows)
  assert.equal(body.commitId, 1)
})

test('--json and --format json keep integers and decimals exact: numbers when a double holds them, strings otherwise', async () => {
  const sql =
    'select 1.25::DECIMAL(5,2) AS d_small, 0.10::DECIMAL(4,2) AS d_scale, -0.001::DECIMAL(10,3) AS d_neg, ' +
    '123456789012345.6::DECIMAL(38,1) AS d_16_digits, 12345678901234567.89::DECIMAL(38,2) AS d_big, ' +
    '9007199254740991::BIGINT AS i_safe, 9007199254740993::BIGINT AS i_big, 170141183460469231731687303715884105727::HUGEINT AS i_huge'
  const [envelope, json] = await runAll([
    ['query', sql, '--lake', lake, '--json'],
    ['query', sql, '--lake', lake, '--format', 'json'],
  ])
  assert.equal(envelope.code, 0, envelope.stderr)
  const expected = {
    d_small: 1.25,
    d_scale: 0.1,
    d_neg: -0.001,
    d_16_digits: '123456789012345.6',
    d_big: '12345678901234567.89',
    i_safe: 9007199254740991,
    i_big: '9007199254740993',
    i_huge: '170141183460469231731687303715884105727',
  }
  assert.deepEqual(parseJson(envelope).rows, [expected])
  assert.deepEqual(JSON.parse(json.stdout), [expected])
})

test('--out writes .parquet, .csv and .json files that read back to the same rows', async () => {
  const sql = 'select sha256, width, height from bronze.images order by sha256'
  const expected = await readWithDuckDb(
    `SELECT sha256, width, height FROM read_parquet('${path.join(lake, 'bronze', 'images', '*.parquet')}') ORDER BY sha256`,
  )
  assert.equal(expected.length, 6)
  const outs = ['out.parquet', 'out.csv', 'out.json', 'sub/dir/out.jsonl'].map((f) => path.join(dir, 'results', f))
  const results = await runAll(outs.map((out) => ['query', sql, '--lake', lake, '--out', out, '--json']))
  for (const [i, out] of outs.entries()) {
    assert.equal(results[i].code, 0, results[i].stderr)
    assert.deepEqual(parseJson(results[i]), {rows: 6, file: out, commitId: 1})
    assert.ok(existsSync(out), out)
  }
  const [parquet, csv, json, jsonl] = outs
  assert.deepEqual(await readWithDuckDb(`SELECT * FROM read_parquet('${parquet}')`), expected)
  assert.deepEqual(await readWithDuckDb(`SELECT sha256, width::INTEGER AS width, height::INTEGER AS height FROM read_csv('${csv}', header = true)`), expected)
  assert.deepEqual(JSON.parse(readFileSync(json, 'utf8')), expected)
  assert.deepEqual(readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l)), expected)

  const bad = await runCli(['query', sql, '--lake', lake, '--out', path.join(dir, 'results', 'out.xlsx')])
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /cannot tell the output format of .*out\.xlsx/)
  // --out inside the lake would replace lake files: refused, nothing changed.
  const before = lakeFingerprint()
  const [committed] = Object.keys(before).filter((f) => f.startsWith('bronze/images/'))
  const intoLake = await runAll([
    ['query', 'select 42 as x', '--lake', lake, '--out', path.join(lake, committed)],
    ['query', 'select 42 as x', '--lake', lake, '--out', path.join(lake, 'new.parquet')],
  ])
  for (const r of intoLake) {
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assert.match(r.stderr, /Error: query: --out .* is inside the lake/)
  }
  assert.deepEqual(lakeFingerprint(), before)
  // The sandbox staged the result inside the lake: nothing is left there.
  assert.deepEqual(listFiles(path.join(lake, '_staging')), [])
})

async function readWithDuckDb(sql: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:')
  const c = await db.connect()
  try {
    return (await c.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[]
  } finally {
    c.closeSync()
    db.closeSync()
  }
}
