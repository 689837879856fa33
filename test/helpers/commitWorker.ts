/**
 * Child process for the concurrent-commit test: commits rows with keys [from, to) of
 * bronze.images into a lake, `perBatch` rows per commit, and prints the commit results
 * as one JSON line. Usage: node --import tsx commitWorker.ts <lake> <from> <to> <perBatch>
 */
import {commitBatch} from '../../src/lake/commit.js'
import {ensureCatalog} from '../../src/lake/catalog.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {beginRun, finishRun} from '../../src/lake/runs.js'
import {StagedBatch} from '../../src/lake/staging.js'

const [lake, from, to, perBatch] = process.argv.slice(2)
const layout = new LakeLayout(lake)
await ensureCatalog(layout)
const run = await beginRun(layout, 'ingest', {from, to}) // it writes bronze.images, as ingest does
const results: Array<{commitId: number | null; added: number}> = []
for (let start = Number(from); start < Number(to); start += Number(perBatch)) {
  const batch = new StagedBatch(layout)
  for (let k = start; k < Math.min(start + Number(perBatch), Number(to)); k++) {
    batch.add('bronze.images', {sha256: `key-${String(k).padStart(6, '0')}`, bytes: k, format: 'png', run_id: run.runId})
  }
  const result = await commitBatch(layout, batch, {operation: 'test', runId: run.runId})
  results.push({commitId: result.commitId, added: result.added['bronze.images'] ?? 0})
}
await finishRun(layout, run, {status: 'succeeded'})
process.stdout.write(JSON.stringify(results) + '\n')
