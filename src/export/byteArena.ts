/**
 * Copies of byte strings kept together in a few large buffers that are reused: for a writer
 * that must hold image bytes beyond the call that handed them over (hf keeps a row group's
 * images until it writes the row group), without a new allocation per image.
 *
 * A fresh buffer per image costs page faults on its memory and, for 200 MB of images, the
 * garbage collections V8 runs for that much short-lived external memory.
 */

/** Slab size: a row group of 100 normalized images (~10 MB) fits in one. */
const SLAB_BYTES = 16 << 20

export class ByteArena {
  private readonly slabs: Buffer[] = []
  private slab = 0
  private used = 0

  /** A copy of `data`, valid until `reset`. */
  copy(data: Uint8Array): Buffer {
    if (data.byteLength > SLAB_BYTES / 4) return Buffer.from(data) // large ones (originals) on their own
    if (this.slab < this.slabs.length && this.used + data.byteLength > SLAB_BYTES) {
      this.slab++
      this.used = 0
    }
    if (this.slab === this.slabs.length) this.slabs.push(Buffer.allocUnsafeSlow(SLAB_BYTES))
    const copy = this.slabs[this.slab].subarray(this.used, this.used + data.byteLength)
    copy.set(data)
    this.used += data.byteLength
    return copy
  }

  /** Every copy made so far is no longer used: their memory is reused by the next copies. */
  reset(): void {
    this.slab = 0
    this.used = 0
  }
}
