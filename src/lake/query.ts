import {DuckDBConnection, quotedString, StatementType} from '@duckdb/node-api'
import {copyFileSync, mkdirSync, renameSync, rmSync} from 'node:fs'
import path from 'node:path'

import {CatalogOptions} from './catalog.js'
import {MlcapError, UsageError} from './errors.js'
import {LakeLayout} from './layout.js'
import {isMissingFileError, LakeReader} from './reader.js'
import {allTables} from './schema.js'
import {openSandboxedReader, sandboxScratchDir} from './sqlSandbox.js'

export interface QueryColumn {
  name: string
  type: string
}

export interface QueryResult {
  columns: QueryColumn[]
  /** JSON-safe values: integers as numbers when exact, else strings; timestamps as text. */
  rows: Record<string, unknown>[]
  /** The lake commit the query read. */
  commitId: number
}

/** Statement kinds a read-only query may be: anything else could change something. */
/** An EXPLAIN counts as the statement it explains (see explainedKind). */
const READ_ONLY_STATEMENTS = new Set<StatementType>([StatementType.SELECT])

const OUTPUT_FORMATS = Object.freeze({
  '.parquet': `FORMAT parquet, COMPRESSION zstd`,
  '.csv': `FORMAT csv, HEADER true`,
  '.json': `FORMAT json, ARRAY true`,
  '.jsonl': `FORMAT json`,
  '.ndjson': `FORMAT json`,
})

/**
 * A query session over the latest commit. The user's SQL runs in a sandbox: one statement,
 * of a read-only kind, with file access limited to the lake folder and the configuration
 * locked so the statement cannot lift those limits (DuckDB would otherwise let a SELECT
 * read any file, and an allowed directory is writable, so the statement kind matters).
 */
export class QuerySession {
  private constructor(
    private reader: LakeReader,
    private readonly options: CatalogOptions,
  ) {}

  static async open(layout: LakeLayout, options: CatalogOptions = {}): Promise<QuerySession> {
    return new QuerySession(await openSandboxedReader(layout, options), options)
  }

  get commitId(): number {
    return this.reader.snapshot.commitId
  }

  async run(sql: string): Promise<QueryResult> {
    const result = await this.onFreshSnapshotIfMoved(async () => {
      const statement = await this.checkReadOnly(sql)
      return this.withHelp(() => this.reader.connection.runAndReadAll(statement))
    })
    const types = result.columnTypes().map((t) => t.toString())
    const columns = result.columnNames().map((name, i) => ({name, type: types[i]}))
    const rows = result.getRowObjectsJson().map((row) => {
      const out: Record<string, unknown> = {}
      for (const {name, type} of columns) out[name] = jsonValue(row[name], type)
      return out
    })
    return {columns, rows, commitId: this.commitId}
  }

  /** Writes the result to a file; the format follows the extension (.parquet, .csv, .json, .jsonl). */
  async runToFile(sql: string, outFile: string): Promise<{rows: number; file: string}> {
    const extension = path.extname(outFile).toLowerCase() as keyof typeof OUTPUT_FORMATS
    const format = OUTPUT_FORMATS[extension]
    if (!format) {
      throw new UsageError(
        'QUERY_OUT_FORMAT',
        `query: cannot tell the output format of ${outFile}: expected one of ${Object.keys(OUTPUT_FORMATS).join(', ')}`,
      )
    }
    const root = this.reader.layout.root
    if (this.reader.layout.contains(outFile)) {
      // Moving the result there could replace a committed data file, an object or the catalog.
      throw new UsageError(
        'QUERY_OUT_IN_LAKE',
        `query: --out ${outFile} is inside the lake ${root}; expected a file outside it`,
        'The lake changes only through mlcap commands. Write the result elsewhere.',
      )
    }
    const statement = await this.onFreshSnapshotIfMoved(() => this.checkReadOnly(sql)) // refuse before making anything
    // The sandbox may only write inside the lake: write there, then move it out.
    const stagingDir = sandboxScratchDir(this.reader.layout)
    mkdirSync(stagingDir, {recursive: true})
    const staged = path.join(stagingDir, `result${extension}`)
    try {
      const result = await this.onFreshSnapshotIfMoved(() =>
        this.withHelp(() => this.reader.connection.runAndReadAll(`COPY (${statement}\n) TO ${quotedString(staged)} (${format})`)),
      )
      const rows = Number(result.getRows()[0]?.[0] ?? 0)
      const target = path.resolve(outFile)
      mkdirSync(path.dirname(target), {recursive: true})
      moveFile(staged, target)
      return {rows, file: target}
    } finally {
      rmSync(stagingDir, {recursive: true, force: true})
    }
  }

  close(): void {
    this.reader.close()
  }

  /**
   * Runs `work`; if it fails because a compaction moved a data file of this snapshot out of
   * its table folder meanwhile, runs it once more on a fresh snapshot (same rows, new files).
   */
  private async onFreshSnapshotIfMoved<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (!isMissingFileError(error)) throw error
      const fresh = await openSandboxedReader(this.reader.layout, this.options)
      this.reader.close()
      this.reader = fresh
      return work()
    }
  }

  private async checkReadOnly(sql: string): Promise<string> {
    const text = sql.trim().replace(/;\s*$/, '')
    if (text === '') throw new UsageError('QUERY_EMPTY', 'query: the SQL statement is empty', 'Pass a SELECT, e.g. mlcap query "select count(*) from bronze.images"')
    const connection: DuckDBConnection = this.reader.connection
    const extracted = await this.withHelp(() => connection.extractStatements(text))
    if (extracted.count !== 1) {
      throw new UsageError('QUERY_NOT_ONE_STATEMENT', `query: expected exactly one statement but received ${extracted.count}`, 'Run statements one at a time.')
    }
    const prepared = await this.withHelp(() => extracted.prepare(0))
    try {
      let kind = prepared.statementType
      // EXPLAIN ANALYZE (and `EXPLAIN (ANALYZE false)`) executes its statement: an EXPLAIN
      // is only as read-only as the statement it explains.
      if (kind === StatementType.EXPLAIN) {
        const explained = await this.explainedKind(text)
        if (explained === null) {
          throw new MlcapError('QUERY_NOT_READ_ONLY', 'query: cannot tell which statement this EXPLAIN runs, so it is refused', {
            exitCode: 2,
            hint: 'write EXPLAIN [ANALYZE] SELECT …, or EXPLAIN (option, …) SELECT … with no comments or parentheses among the options',
          })
        }
        kind = explained
      }
      if (!READ_ONLY_STATEMENTS.has(kind)) {
        throw new MlcapError(
          'QUERY_NOT_READ_ONLY',
          `query: only SELECT-like statements may run, but this statement is of kind ${StatementType[kind] ?? kind}`,
          {
            exitCode: 2,
            hint: 'mlcap query is read-only. To save a result use --out FILE (.parquet, .csv, .json, .jsonl); lake tables change only through mlcap commands.',
          },
        )
      }
    } finally {
      prepared.destroySync()
    }
    return text
  }

  /** The kind of the statement an EXPLAIN wraps, through nested EXPLAINs; null when it cannot be told (refused). */
  private async explainedKind(text: string, depth = 0): Promise<StatementType | null> {
    const inner = explainedStatement(text)
    if (inner === null || depth >= 4) return null
    const extracted = await this.withHelp(() => this.reader.connection.extractStatements(inner))
    if (extracted.count !== 1) return null
    const prepared = await this.withHelp(() => extracted.prepare(0))
    let kind: StatementType
    try {
      kind = prepared.statementType
    } finally {
      prepared.destroySync()
    }
    return kind === StatementType.EXPLAIN ? this.explainedKind(inner, depth + 1) : kind
  }

  /** Adds what a user needs to DuckDB's own message: the tables that do exist. */
  private async withHelp<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (error instanceof MlcapError) throw error
      const message = (error as Error).message
      const unknownTable = /Table with name .* does not exist|Catalog Error: .*(Table|Schema)/i.test(message)
      throw new MlcapError('QUERY_FAILED', `query: ${message}`, {
        exitCode: 1,
        hint: unknownTable ? `Tables: ${allTables().map((t) => t.id).join(', ')}, lake.commits, lake.runs, lake.files` : undefined,
      })
    }
  }
}

/** Index after whitespace and (nested, as DuckDB allows) comments from `i`; -1 if a comment never ends. */
function skipSpace(s: string, i: number): number {
  for (;;) {
    while (i < s.length && /\s/.test(s[i])) i++
    if (s.startsWith('--', i)) {
      const nl = s.indexOf('\n', i)
      i = nl < 0 ? s.length : nl + 1
    } else if (s.startsWith('/*', i)) {
      let depth = 0
      do {
        if (s.startsWith('/*', i)) (depth++, (i += 2))
        else if (s.startsWith('*/', i)) (depth--, (i += 2))
        else i++
      } while (depth > 0 && i < s.length)
      if (depth > 0) return -1
    } else return i
  }
}

/** `EXPLAIN [ANALYZE | (options)] <statement>` → `<statement>`; null when the text is not shaped so. */
export function explainedStatement(text: string): string | null {
  let i = skipSpace(text, 0)
  const explain = /^explain\b/i.exec(text.slice(i))
  if (i < 0 || !explain) return null
  i = skipSpace(text, i + explain[0].length)
  if (i < 0) return null
  const analyze = /^analy[sz]e\b/i.exec(text.slice(i))
  if (analyze) i += analyze[0].length
  else if (text[i] === '(') {
    let quote: string | null = null
    let j = i + 1
    for (; j < text.length; j++) {
      const c = text[j]
      if (quote) {
        if (c === quote) quote = null
      } else if (c === "'" || c === '"') quote = c
      else if (c === ')') break
      // A nested parenthesis or a comment among the options: where DuckDB thinks they end
      // cannot be told safely here (`(analyze /*) select 1 -- */) copy …` runs the COPY).
      else if (c === '(' || text.startsWith('--', j) || text.startsWith('/*', j)) return null
    }
    if (j >= text.length) return null
    i = j + 1
  }
  return text.slice(i)
}

function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error
    copyFileSync(from, to)
  }
}

const EXACT_NUMBER_TYPES = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|DECIMAL)/

/**
 * DuckDB hands integers and decimals over as text; they become JSON numbers only when a
 * double holds them exactly (safe integers; decimals of at most 15 significant digits, which
 * read back as the same decimal). Others stay strings: a rounded id or sum would be wrong
 * without any sign of it.
 */
function jsonValue(value: unknown, type: string): unknown {
  if (typeof value !== 'string' || !EXACT_NUMBER_TYPES.test(type)) return value
  const n = Number(value)
  if (!Number.isFinite(n)) return value
  if (type.startsWith('DECIMAL')) return significantDigits(value) <= 15 ? n : value
  return Number.isSafeInteger(n) ? n : value
}

/** Significant digits of a plain decimal as DuckDB writes it: `-0012.3400` has 6 (leading zeros do not count, trailing ones do). */
function significantDigits(decimal: string): number {
  const digits = decimal.replace(/[^0-9]/g, '').replace(/^0+/, '')
  return digits.length
}
