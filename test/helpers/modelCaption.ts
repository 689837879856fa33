/**
 * A model caption of one image committed to silver.captions as the caption stage writes it:
 * its own run, the real commit path. For tests that need a model caption without a model.
 */
import {commitBatch} from '../../src/lake/commit.js'
import type {LakeLayout} from '../../src/lake/layout.js'
import {beginRun, finishRun} from '../../src/lake/runs.js'
import {StagedBatch} from '../../src/lake/staging.js'

export async function commitModelCaption(layout: LakeLayout, sha256: string, captionId: string): Promise<{commitId: number | null}> {
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
  return {commitId: result.commitId}
}
