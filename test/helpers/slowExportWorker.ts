/**
 * Child process for the export kill test: exports the test samples (fixtures.makeSamples)
 * to <out> as <format>, yielding one sample every 50 ms forever after the first pass, so the
 * export is always mid-write when the parent kills it. Usage:
 *   node --import tsx slowExportWorker.ts <out> <format>
 */
import {writeExport, type ExportFormat} from '../../src/export/exporter.js'
import type {ExportSample} from '../../src/export/sample.js'
import {makeSamples} from '../export/fixtures.js'

const [out, format] = process.argv.slice(2)
const samples = await makeSamples()

async function* forever(): AsyncGenerator<ExportSample> {
  for (let round = 0; ; round++) {
    for (const sample of samples) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      yield {...sample, key: `${sample.key}r${round}`}
    }
  }
}

await writeExport(forever(), {format: format as ExportFormat, outDir: out, captions: 'first', shardSize: 4, manifestInfo: {}})
