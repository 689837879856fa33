/**
 * Running user SQL safely: a reader whose DuckDB can read only the lake folder and cannot
 * change its own configuration, and a check that a user's WHERE predicate is exactly one
 * expression over one table (DuckDB's own parser decides, not a regular expression).
 *
 * `mlcap query` and `export --where` both run user SQL through this sandbox; an allowed
 * directory is writable, so callers must also make sure only SELECT-like SQL runs: the
 * predicate check does that for the text it accepts.
 */
import {DuckDBConnection, quotedString} from '@duckdb/node-api'
import {randomBytes} from 'node:crypto'
import path from 'node:path'

import {UsageError} from './errors.js'
import {LakeLayout} from './layout.js'
import {LakeReader, ReaderOptions, tableRef} from './reader.js'
import {getTable} from './schema.js'

/**
 * A new scratch folder name for one sandboxed session, in the lake's staging area. The
 * `query-<pid>-<random>` shape is what gc reads the owner from (gc.ts, ownerAlive).
 */
export function sandboxScratchDir(layout: LakeLayout): string {
  return path.join(layout.stagingDir, `query-${process.pid}-${randomBytes(4).toString('hex')}`)
}

/** Limits `connection` to files under the lake folder and locks the configuration. */
export async function applySandbox(connection: DuckDBConnection, layout: LakeLayout): Promise<void> {
  // DuckDB also allows its temp directory (default `.tmp` in the working directory, outside
  // the lake): move it into the lake's staging area (gc removes it once this process is gone).
  await connection.run(`SET temp_directory = ${quotedString(sandboxScratchDir(layout))}`)
  await connection.run(`SET allowed_directories = [${quotedString(layout.root + path.sep)}]`)
  await connection.run(`SET enable_external_access = false`)
  await connection.run(`SET lock_configuration = true`)
}

/** A LakeReader over the latest commit, sandboxed; the caller closes it. */
export async function openSandboxedReader(layout: LakeLayout, options: ReaderOptions = {}): Promise<LakeReader> {
  const reader = await LakeReader.open(layout, options)
  try {
    await applySandbox(reader.connection, layout)
    return reader
  } catch (error) {
    reader.close()
    throw error
  }
}

/** One node of DuckDB's serialized parse tree (json_serialize_sql). */
type AstNode = Record<string, unknown>

export interface PredicateCheckOptions {
  /** How the predicate is named in messages, e.g. `export: --where`. */
  label: string
  /** An example predicate for the messages. */
  example: string
}

/**
 * Checks that `predicate` is one boolean expression over the columns of `tableId` and
 * returns `SELECT * FROM <table> WHERE (<predicate>)`, a statement the caller may run or
 * wrap (as a subquery or CTE). Refused, with a UsageError naming the text:
 * - anything DuckDB does not parse as exactly one SELECT * FROM <table> WHERE (…) with
 *   nothing else (`1=1; COPY …`, `1=1) GROUP BY ALL HAVING (1=1`, `…) LIMIT (1`);
 * - subqueries (the predicate may look at its own row only);
 * - a predicate that does not bind (unknown column, aggregate, wrong types).
 * Functions that read files are not refused here: the sandbox refuses them when they run.
 */
export async function checkPredicate(
  connection: DuckDBConnection,
  tableId: string,
  predicate: string,
  options: PredicateCheckOptions,
): Promise<string> {
  const text = predicate.trim()
  const shown = JSON.stringify(text)
  const def = getTable(tableId)
  const columns = def.columns.map((c) => c.name).join(', ')
  const expected = `expected one SQL expression over the columns of ${tableId}, e.g. ${options.example}`
  const hint = `columns of ${tableId}: ${columns}`
  if (text === '') throw new UsageError('PREDICATE_INVALID', `${options.label} is empty; ${expected}`, hint)

  const [schema, name] = tableId.split('.')
  // The parenthesis on its own line ends a `--` comment the predicate might end with.
  const statement = `SELECT * FROM ${tableRef(tableId)} WHERE (\n${text}\n)`
  const serialized = await connection.runAndReadAll('SELECT json_serialize_sql($1::VARCHAR)', [statement])
  const tree = JSON.parse(String(serialized.getRows()[0][0])) as {error?: boolean; error_message?: string; statements?: Array<{node: AstNode}>}
  if (tree.error) {
    throw new UsageError('PREDICATE_INVALID', `${options.label} ${shown} does not parse as a predicate (${tree.error_message ?? 'syntax error'}); ${expected}`, hint)
  }
  const node = tree.statements?.length === 1 ? tree.statements[0].node : undefined
  const from = node?.from_table as AstNode | undefined
  const selectList = node?.select_list as AstNode[] | undefined
  const shaped =
    node !== undefined &&
    node.type === 'SELECT_NODE' &&
    isEmptyList(node.modifiers) &&
    isEmptyList((node.cte_map as {map?: unknown} | undefined)?.map) &&
    selectList?.length === 1 &&
    selectList[0].class === 'STAR' &&
    from?.type === 'BASE_TABLE' &&
    from.schema_name === schema &&
    from.table_name === name &&
    (from.catalog_name ?? '') === '' &&
    from.sample === null &&
    from.at_clause == null &&
    node.where_clause != null &&
    isEmptyList(node.group_expressions) &&
    isEmptyList(node.group_sets) &&
    node.aggregate_handling === 'STANDARD_HANDLING' &&
    node.having == null &&
    node.sample == null &&
    node.qualify == null &&
    Object.keys(node).every((key) => KNOWN_SELECT_KEYS.has(key))
  if (!shaped) {
    throw new UsageError(
      'PREDICATE_INVALID',
      `${options.label} ${shown} is not a single predicate: it would change the statement around it (a ';', a closing parenthesis, GROUP BY, LIMIT, …); ${expected}`,
      hint,
    )
  }
  if (containsSubquery(node.where_clause)) {
    throw new UsageError('PREDICATE_INVALID', `${options.label} ${shown} contains a subquery; expected a predicate that looks at its own row of ${tableId} only, e.g. ${options.example}`, hint)
  }
  // Binding finds unknown columns and type errors before anything runs.
  try {
    const extracted = await connection.extractStatements(statement)
    if (extracted.count !== 1) throw new Error(`${extracted.count} statements`)
    const prepared = await extracted.prepare(0)
    prepared.destroySync()
  } catch (error) {
    throw new UsageError('PREDICATE_INVALID', `${options.label} ${shown} cannot be used: ${(error as Error).message.split('\n')[0]}; ${expected}`, hint)
  }
  return statement
}

/** Every key json_serialize_sql gives a plain SELECT node (an unknown one means a clause we did not check). */
const KNOWN_SELECT_KEYS = new Set([
  'type', 'modifiers', 'cte_map', 'select_list', 'from_table', 'where_clause', 'group_expressions',
  'group_sets', 'aggregate_handling', 'having', 'sample', 'qualify',
])

function isEmptyList(value: unknown): boolean {
  return Array.isArray(value) && value.length === 0
}

function containsSubquery(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(containsSubquery)
  if (value === null || typeof value !== 'object') return false
  const node = value as AstNode
  if (node.class === 'SUBQUERY' || node.type === 'SUBQUERY' || 'subquery' in node) return true
  return Object.values(node).some(containsSubquery)
}
