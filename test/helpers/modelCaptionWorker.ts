/**
 * Child process for the rebuild-race test: commits one model caption of image <sha256> to
 * silver.captions as the caption stage does (see modelCaption.ts) and prints the commit id.
 * Usage: node --import tsx modelCaptionWorker.ts <lake> <sha256> <caption_id>
 */
import {LakeLayout} from '../../src/lake/layout.js'
import {commitModelCaption} from './modelCaption.js'

const [lake, sha256, captionId] = process.argv.slice(2)
const result = await commitModelCaption(new LakeLayout(lake), sha256, captionId)
process.stdout.write(JSON.stringify({commitId: result.commitId}) + '\n')
