/**
 * Child process for the concurrent-gold test: runs an incremental gold stage on a lake and,
 * once it has read its inputs and decided its first pair (before any commit), writes
 * `<markers>/read` and waits until `<markers>/go` exists. That holds the run between its
 * read of the lake and its commit while the test lets another gold run commit.
 * Usage: node --import tsx goldPauseWorker.ts <lake> <markers>
 */
import {existsSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {runGold} from '../../src/lake/gold.js'
import {LakeLayout} from '../../src/lake/layout.js'

const [lake, markers] = process.argv.slice(2)
const pause = new Int32Array(new SharedArrayBuffer(4))
let paused = false
const summary = await runGold(new LakeLayout(lake), {
  onProgress: () => {
    if (paused) return
    paused = true
    writeFileSync(path.join(markers, 'read'), '')
    const deadline = Date.now() + 60_000
    while (!existsSync(path.join(markers, 'go')) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20)
  },
})
process.stdout.write(JSON.stringify(summary) + '\n')
