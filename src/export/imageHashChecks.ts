/**
 * Proves each exported image hashes to the sha256 its sample names, off the main thread
 * when it can.
 *
 * A sample read from an immutable file (`imageFile`: a content-addressed lake object, only
 * ever created by rename and never changed in place) is checked by the HashThread reading
 * that file again, while the writer goes on: on the export benchmark that moved ~115 ms of
 * 2,000 SHA-256s off the main thread, and copying the bytes to the thread instead cost
 * almost as much. Other images are hashed here, synchronously. A mismatch fails the export
 * at a later `add` or at `settle`, before anything is published. At most MAX_PENDING_BYTES
 * of images wait to be checked at once.
 */
import {createHash} from 'node:crypto'
import type {HashThread} from './hashThread.js'
import {MlcapError} from '../lake/errors.js'
import {checkSampleHash, type ExportSample} from './sample.js'

const MAX_PENDING_BYTES = 64 * 1024 * 1024

interface Pending {
  bytes: number
  /** Resolves with the error to report, or undefined when the hash matched. */
  outcome: Promise<unknown>
}

export class ImageHashChecks {
  private readonly pending: Pending[] = []
  private pendingBytes = 0

  constructor(private readonly thread?: HashThread) {}

  /** Checks `sample.image`, now or on the thread; throws the error of an earlier sample that did not match. */
  async add(sample: ExportSample, index: number): Promise<void> {
    if (!this.thread || sample.imageFile === undefined) {
      checkSampleHash(sample, index, createHash('sha256').update(sample.image).digest('hex'))
      return
    }
    const outcome = this.thread.hashFile(sample.imageFile).then(
      (actual) => {
        try {
          if (actual.bytes !== sample.image.byteLength) throw imageFileChanged(sample, index, actual.bytes)
          checkSampleHash(sample, index, actual.sha256)
          return undefined
        } catch (error) {
          return error
        }
      },
      (error: unknown) => error,
    )
    this.pending.push({bytes: sample.image.byteLength, outcome})
    this.pendingBytes += sample.image.byteLength
    while (this.pendingBytes > MAX_PENDING_BYTES) await this.settleOldest()
  }

  /** Waits for every check; throws the first mismatch. */
  async settle(): Promise<void> {
    while (this.pending.length > 0) await this.settleOldest()
  }

  private async settleOldest(): Promise<void> {
    const oldest = this.pending.shift()!
    this.pendingBytes -= oldest.bytes
    const error = await oldest.outcome
    if (error !== undefined) throw error
  }
}

function imageFileChanged(sample: ExportSample, index: number, bytes: number): MlcapError {
  return new MlcapError('EXPORT_HASH_MISMATCH', `export: sample #${index} (key ${JSON.stringify(sample.key)}) image file ${sample.imageFile} has ${bytes} bytes now but ${sample.image.byteLength} were exported; expected it never to change`, {
    hint: 'something outside mlcap changed the object store while the export ran: run the export again',
  })
}
