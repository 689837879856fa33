/**
 * The lake commands through the real CLI (`node bin/run.js`): help with examples, exit
 * codes, human output, the --json contract of each command, and errors that explain
 * themselves without a stack trace (unless --debug).
 */
import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'
import path from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'

import {CLI, parseJson, runCli, tempDir, writeImageFolder, type CliResult} from '../helpers/lakeFixtures.js'

let dir: string
let cleanup: () => void
let lake: string
let photos: string
let ingested: CliResult

before(async () => {
  ;({dir, cleanup} = tempDir('mlcap-cli-'))
  photos = path.join(dir, 'photos')
  lake = path.join(dir, 'lake')
  await writeImageFolder(photos, 5, {captionEvery: 1})
  ingested = await runCli(['ingest', photos, '--lake', lake])
})

after(() => cleanup())

const STACK = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m

async function all(argsList: string[][], options: Parameters<typeof runCli>[1] = {}): Promise<CliResult[]> {
  const out: CliResult[] = []
  for (let i = 0; i < argsList.length; i += 3) out.push(...(await Promise.all(argsList.slice(i, i + 3).map((a) => runCli(a, options)))))
  return out
}

test('every lake command has --help with usage and examples (exit 0)', async () => {
  const commands = ['ingest', 'query', 'status', 'gc']
  const results = await all(commands.map((c) => [c, '--help']))
  for (const [i, r] of results.entries()) {
    assert.equal(r.code, 0, `${commands[i]} --help: ${r.stderr}`)
    assert.match(r.stdout, /USAGE\n\s+\$ mlcap /, commands[i])
    assert.match(r.stdout, /EXAMPLES\n\s+\$ mlcap /, commands[i])
    assert.match(r.stdout, /--lake=<value>/, commands[i])
    assert.match(r.stdout, /--json/, commands[i])
  }
})

test('ingest prints a summary and exits 0; status shows the tables', async () => {
  assert.equal(ingested.code, 0, ingested.stderr)
  assert.match(ingested.stdout, /^10 files: 5 new images, 0 already known, 5 new captions \(5 found\), 0 rejected in \d+\.\d s\.$/m)
  assert.match(ingested.stdout, /^Commit 1 \(run ingest-\d{8}T\d{6}-[0-9a-f]{6}\)\.$/m)
  assert.equal(ingested.stderr, '', 'nothing on stderr when not a terminal')

  const status = await runCli(['status', '--lake', lake])
  assert.equal(status.code, 0, status.stderr)
  assert.ok(status.stdout.startsWith(`Lake ${lake}  (commit 1)`), status.stdout)
  assert.match(status.stdout, /^bronze\.images\s+5\s+1\s+[\d.]+ K?B$/m)
  assert.match(status.stdout, /^bronze\.captions\s+5\s+1\s/m)
  assert.match(status.stdout, /^objects: 5 \(/m)
  assert.match(status.stdout, /Last commits\n\s+1 .* ingest\s+bronze\.captions \+5, bronze\.images \+5, bronze\.sources \+5/)
})

test('status --json has a pinned shape', async () => {
  const r = await runCli(['status', '--lake', lake, '--json'])
  assert.equal(r.code, 0, r.stderr)
  const s = parseJson(r)
  assert.deepEqual(Object.keys(s).sort(), ['commitId', 'interrupted', 'lake', 'lastCommits', 'objects', 'pending', 'rejects', 'running', 'tables'])
  assert.equal(s.lake, lake)
  assert.equal(s.commitId, 1)
  for (const t of s.tables) {
    assert.deepEqual(Object.keys(t).sort(), ['bytes', 'files', 'rows', 'table'])
    for (const k of ['rows', 'files', 'bytes']) assert.ok(Number.isInteger(t[k]), `${t.table}.${k}`)
  }
  const byTable = Object.fromEntries(s.tables.map((t: {table: string}) => [t.table, t]))
  assert.deepEqual(
    ['bronze.images', 'bronze.sources', 'bronze.captions', 'bronze.rejects'].map((t) => byTable[t]?.rows),
    [5, 5, 5, 0],
  )
  assert.deepEqual(s.objects.count, 5)
  assert.ok(Number.isInteger(s.objects.bytes) && s.objects.bytes > 0)
  assert.equal(s.lastCommits.length, 1)
  assert.deepEqual(Object.keys(s.lastCommits[0]).sort(), ['added', 'commitId', 'committedAt', 'operation', 'runId'])
  assert.deepEqual(s.lastCommits[0].added, {'bronze.captions': 5, 'bronze.images': 5, 'bronze.sources': 5})
  assert.equal(s.lastCommits[0].operation, 'ingest')
  assert.ok(!Number.isNaN(Date.parse(s.lastCommits[0].committedAt.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00'))), s.lastCommits[0].committedAt)
  assert.deepEqual(s.rejects, [])
  assert.deepEqual([s.running, s.interrupted], [[], []])
  assert.ok(Array.isArray(s.pending))
  for (const p of s.pending) assert.deepEqual(Object.keys(p).sort(), ['description', 'items', 'stage'])
})

test('tables are cut to fit a terminal, and print full values when piped', async (t) => {
  const sql = `select repeat('x', 200) as long, 'end' as short`
  const piped = await runCli(['query', sql, '--lake', lake])
  assert.equal(piped.code, 0, piped.stderr)
  assert.equal(piped.stdout.split('\n')[2], `${'x'.repeat(200)}  end`)

  // A terminal 80 columns wide, through util-linux script(1), which gives the CLI a pty.
  if (process.platform !== 'linux' || spawnSync('script', ['--version']).status !== 0) return t.skip('no script(1) for a pseudo-terminal')
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`
  const command = `stty cols 80; exec ${[process.execPath, CLI, 'query', sql, '--lake', lake].map(quote).join(' ')}`
  const env = {...process.env, NO_COLOR: '1', FORCE_COLOR: '0', NODE_OPTIONS: ''}
  const tty = spawnSync('script', ['-qec', command, '/dev/null'], {encoding: 'utf8', env, timeout: 60_000})
  assert.equal(tty.status, 0, tty.stderr)
  const lines = tty.stdout.split(/\r?\n/)
  assert.ok(lines.slice(0, 3).every((l) => l.length <= 80), tty.stdout)
  assert.match(lines[2]!, /^x+…  end$/)
})

test('query, gc --dry-run and gc through the CLI, with --json', async () => {
  const [query, dry, gc, gcJson] = await all([
    ['query', 'select count(*) as n from bronze.images', '--lake', lake],
    ['gc', '--dry-run', '--lake', lake],
    ['gc', '--lake', lake],
    ['gc', '--lake', lake, '--json', '--min-age', '0'],
  ])
  assert.equal(query.code, 0, query.stderr)
  assert.match(query.stdout, /^n\n─+\n5\n\(1 row\)\n$/)
  assert.equal(dry.code, 0, dry.stderr)
  assert.equal(dry.stdout, '0 item(s), 0 B would be freed.\n')
  assert.equal(gc.code, 0, gc.stderr)
  assert.equal(gc.stdout, '0 item(s), 0 B freed.\n')
  assert.equal(gcJson.code, 0, gcJson.stderr)
  assert.deepEqual(parseJson(gcJson), {dryRun: false, removed: [], bytes: 0, rolledForward: 0})
})

test('MLCAP_LAKE is used when --lake is not given, whatever the working directory', async () => {
  const elsewhere = path.join(dir, 'elsewhere')
  mkdirSync(elsewhere)
  const r = await runCli(['query', 'select count(*) as n from bronze.sources', '--json'], {cwd: elsewhere, env: {MLCAP_LAKE: lake}})
  assert.equal(r.code, 0, r.stderr)
  assert.deepEqual(parseJson(r).rows, [{n: 5}])
  // Without either, the default is ./data/lake relative to the working directory: not there.
  const none = await runCli(['status'], {cwd: elsewhere})
  assert.equal(none.code, 1)
  assert.ok(none.stderr.includes(`no lake at ${path.join(elsewhere, 'data', 'lake')}`), none.stderr)
})

test('errors explain themselves with exit codes and no stack trace; --debug adds the stack', async () => {
  const missing = path.join(dir, 'no-lake')
  const [status, query, gc, json, debug, noInput, noArg, badFlag, badFlagJson, badValueJson] = await all([
    ['status', '--lake', missing],
    ['query', 'select 1', '--lake', missing],
    ['gc', '--lake', missing],
    ['status', '--lake', missing, '--json'],
    ['status', '--lake', missing, '--debug'],
    ['ingest', path.join(dir, 'does-not-exist'), '--lake', lake],
    ['query', '--lake', lake],
    ['status', '--lake', lake, '--frobnicate'],
    ['etl', 'run', 'all', '--lake', lake, '--frobnicate', '--json'],
    ['export', '--format', 'jsonl', '--out', path.join(dir, 'never'), '--limit', '0', '--lake', lake, '--json'],
  ])
  for (const r of [status, query, gc]) {
    assert.equal(r.code, 1, r.stderr)
    assert.ok(r.stderr.includes(`Error: lake: no lake at ${missing} (no catalog.duckdb there)`), r.stderr)
    assert.match(r.stderr, /Hint: Create one with `mlcap ingest <folder>`/)
    assert.doesNotMatch(r.stderr, STACK)
    assert.equal(r.stdout, '')
  }
  assert.equal(json.code, 1)
  assert.deepEqual(parseJson(json), {
    error: {
      code: 'LAKE_NOT_FOUND',
      message: `lake: no lake at ${missing} (no catalog.duckdb there)`,
      hint: 'Create one with `mlcap ingest <folder>`, or point at an existing lake with --lake DIR or MLCAP_LAKE.',
      exitCode: 1,
    },
  })
  assert.equal(debug.code, 1)
  assert.match(debug.stderr, STACK, '--debug shows where the error came from')

  assert.equal(noInput.code, 2, noInput.stderr)
  assert.match(noInput.stderr, /Error: ingest: input ".*does-not-exist" does not exist/)
  assert.doesNotMatch(noInput.stderr, STACK)
  for (const r of [noArg, badFlag]) {
    assert.equal(r.code, 2, r.stderr)
    assert.doesNotMatch(r.stderr, STACK)
  }
  assert.match(noArg.stderr, /Missing 1 required arg/)
  assert.match(badFlag.stderr, /Nonexistent flag: --frobnicate/)
  // With --json, a flag oclif refuses is a usage error in the documented shape (not oclif's whole parse context, exit 1).
  assert.equal(badFlagJson.code, 2, badFlagJson.stdout)
  assert.deepEqual(parseJson(badFlagJson), {
    error: {code: 'INVALID_ARGUMENTS', message: 'Nonexistent flag: --frobnicate', hint: 'mlcap etl run --help lists the flags and arguments', exitCode: 2},
  })
  assert.equal(badValueJson.code, 2, badValueJson.stdout)
  assert.match(parseJson(badValueJson).error.message, /--limit .*greater than or equal to 1 but received: 0/)
  assert.ok(badValueJson.stdout.length < 1000, 'a short answer')
})

test('a lake written by a newer mlcap is refused by every command: clear message, exit 1, nothing changed', async () => {
  const {dir: other, cleanup: done} = tempDir('mlcap-cli-new-')
  try {
    const newer = path.join(other, 'lake')
    const first = await runCli(['ingest', photos, '--lake', newer])
    assert.equal(first.code, 0, first.stderr)
    const db = await DuckDBInstance.create(path.join(newer, 'catalog.duckdb'))
    const c = await db.connect()
    await c.run(`UPDATE meta SET value = '99' WHERE key = 'format_version'`)
    c.closeSync()
    db.closeSync()

    const results = await all([
      ['status', '--lake', newer],
      ['query', 'select 1', '--lake', newer],
      ['ingest', photos, '--lake', newer, '--rehash'],
      ['gc', '--lake', newer],
      ['status', '--lake', newer, '--json'],
    ])
    for (const r of results.slice(0, 4)) {
      assert.equal(r.code, 1, `${r.stdout}${r.stderr}`)
      assert.ok(r.stderr.includes(`Error: lake: ${newer} has format version 99, but this mlcap reads versions up to 1`), r.stderr)
      assert.match(r.stderr, /Hint: The lake was written by a newer mlcap\. Upgrade mlcap/)
      assert.doesNotMatch(r.stderr, STACK)
    }
    assert.equal(parseJson(results[4]).error.code, 'LAKE_TOO_NEW')

    const db2 = await DuckDBInstance.create(path.join(newer, 'catalog.duckdb'))
    const c2 = await db2.connect()
    try {
      const rows = (await c2.runAndReadAll(`SELECT (SELECT count(*) FROM commits), (SELECT count(*) FROM runs), (SELECT value FROM meta WHERE key = 'format_version')`)).getRows()
      assert.deepEqual(rows[0].map(String), ['1', '1', '99'], 'no run, commit or upgrade was written')
    } finally {
      c2.closeSync()
      db2.closeSync()
    }
  } finally {
    done()
  }
})
