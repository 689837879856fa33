/**
 * Child process for the rebuild-race test: commits one model caption of image <sha256> to
 * silver.captions as the caption stage does (its own run, the real commit path) and prints
 * the commit id. Usage: node --import tsx modelCaptionWorker.ts <lake> <sha256> <caption_id>
 */
import {commitBatch} from '../../src/lake/commit.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {beginRun, finishRun} from '../../src/lake/runs.js'
import {StagedBatch} from '../../src/lake/staging.js'

const [lake, sha256, captionId] = process.argv.slice(2)
const layout = new LakeLayout(lake)
const run = await beginRun(layout, 'caption', {model: 'test/model'})
const batch = new StagedBatch(layout)
batch.add('silver.captions', {
  caption_id: captionId,
  sha256,
  status: 'ok',
  text: 'a picture of noise',
  raw_text: 'a picture of noise',
  words: 4,
  tokens: 4,
  source: 'model',
  source_kind: 'model',
  model_id: 'test/model',
  model_revision: 'abc123',
  model_dtype: 'q8',
  generation: {max_new_tokens: 20, num_beams: 1},
  cleaning_version: 1,
  created_at: '2026-01-02T03:04:05.000Z',
  run_id: run.runId,
})
const result = await commitBatch(layout, batch, {operation: 'caption', runId: run.runId})
await finishRun(layout, run, {status: 'succeeded', rowsOut: 1})
process.stdout.write(JSON.stringify({commitId: result.commitId}) + '\n')
