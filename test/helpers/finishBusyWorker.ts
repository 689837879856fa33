/**
 * Child process for the "end of a run cannot be recorded" test: ingests <roots...> one file
 * per commit, one file at a time, with a 500 ms lock timeout. Once a file after the first new
 * image has been read (so that image is committed and only already-known files follow), another
 * process takes the catalog lock and keeps it until the ingest has returned: the ingest can no
 * longer record the end of its run. Prints the ingest summary as one JSON line.
 * Usage: node --import tsx finishBusyWorker.ts <lake> <markers> <root...>
 * (The roots must list one new image first, then files the lake already knows.)
 */
import type {ChildProcess} from 'node:child_process'
import path from 'node:path'

import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {releaseHolder, startCatalogHolder, waitForHolderSync} from './catalogHolder.js'

const [lake, markers, ...roots] = process.argv.slice(2)
const marker = path.join(markers, 'held')
let holder: ChildProcess | undefined
try {
  const summary = await ingest(new LakeLayout(lake), roots, {
    concurrency: 1,
    batchSize: 1,
    lockTimeoutMs: 500,
    onProgress: (progress) => {
      if (holder || progress.processed < 2) return
      holder = startCatalogHolder(lake, marker)
      waitForHolderSync(marker)
    },
  })
  process.stdout.write(JSON.stringify(summary) + '\n')
} finally {
  if (holder) await releaseHolder(holder)
}
