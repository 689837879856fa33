/**
 * Renders rows as an aligned text table. On a terminal it fits the width: columns shrink
 * from the widest down, and cells that do not fit are cut with an ellipsis. Piped or
 * redirected, nothing is cut: the values (run ids, paths) are there to be copied or parsed.
 */
export function renderTable(columns: string[], rows: Array<Record<string, unknown>>, width = outputWidth()): string {
  const cells = rows.map((row) => columns.map((c) => cellText(row[c])))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)))
  const separator = 2
  const budget = Math.max(width, columns.length * 4)
  let total = widths.reduce((a, b) => a + b, 0) + separator * (columns.length - 1)
  while (total > budget) {
    const widest = widths.indexOf(Math.max(...widths))
    if (widths[widest] <= 4) break
    widths[widest]--
    total--
  }
  const line = (values: string[]) =>
    values
      .map((v, i) => fit(v, widths[i]))
      .join(' '.repeat(separator))
      .trimEnd()
  const header = line(columns)
  const rule = widths.map((w) => '─'.repeat(w)).join(' '.repeat(separator))
  return [header, rule, ...cells.map(line)].join('\n')
}

/** The width tables fit: the terminal's, or unlimited when stdout is not a terminal. */
function outputWidth(): number {
  return process.stdout.isTTY ? process.stdout.columns || 120 : Number.POSITIVE_INFINITY
}

function cellText(value: unknown): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value).replace(/\s+/g, ' ')
}

function fit(text: string, width: number): string {
  if (text.length <= width) return text.padEnd(width)
  return text.slice(0, Math.max(0, width - 1)) + '…'
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}
