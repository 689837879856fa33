/**
 * A HEIC file (HEIF container, one HEVC-coded image item) written byte by byte, so tests can
 * make iPhone-style photos without an HEVC encoder. The container is complete (ftyp, meta
 * with hdlr/pitm/iloc/iinf/iprp, mdat) and declares `width`×`height` in its `ispe` box; the
 * HEVC configuration has no parameter sets and the coded data is filler, so a reader that
 * parses the container reports a HEIF image with HEVC compression, and any attempt to
 * decode the pixels fails.
 */

function box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const header = Buffer.alloc(8)
  header.writeUInt32BE(8 + body.length, 0)
  header.write(type, 4, 'latin1')
  return Buffer.concat([header, body])
}

/** A full box: version and 24-bit flags before the body. */
function fullBox(type: string, version: number, flags: number, ...parts: Buffer[]): Buffer {
  const vf = Buffer.alloc(4)
  vf.writeUInt32BE(((version & 0xff) << 24) | (flags & 0xffffff), 0)
  return box(type, vf, ...parts)
}

function u16(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 2)
  values.forEach((v, i) => b.writeUInt16BE(v, i * 2))
  return b
}

function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4)
  values.forEach((v, i) => b.writeUInt32BE(v, i * 4))
  return b
}

export function heicFile(width: number, height: number): Buffer {
  const coded = Buffer.alloc(64, 0x5a) // filler where the HEVC slice data would be
  const ftyp = box('ftyp', Buffer.from('heic', 'latin1'), u32(0), Buffer.from('mif1heicmiaf', 'latin1'))
  const hdlr = fullBox('hdlr', 0, 0, u32(0), Buffer.from('pict', 'latin1'), u32(0, 0, 0), Buffer.from([0]))
  const pitm = fullBox('pitm', 0, 0, u16(1))
  const infe = fullBox('infe', 2, 0, u16(1, 0), Buffer.from('hvc1', 'latin1'), Buffer.from([0]))
  const iinf = fullBox('iinf', 0, 0, u16(1), infe)
  // HEVCDecoderConfigurationRecord, version 1, Main profile, no parameter-set arrays.
  const hvcC = box('hvcC', Buffer.from([1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5a, 0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 0]))
  const ispe = fullBox('ispe', 0, 0, u32(width, height))
  const ipco = box('ipco', hvcC, ispe)
  // Item 1 has properties 1 (hvcC, essential) and 2 (ispe).
  const ipma = fullBox('ipma', 0, 0, u32(1), u16(1), Buffer.from([2, 0x81, 0x02]))
  const iprp = box('iprp', ipco, ipma)
  // iloc v0: offset and length 4 bytes, no base offset; one item, one extent (offset patched below).
  const iloc = (offset: number) => fullBox('iloc', 0, 0, Buffer.from([0x44, 0x00]), u16(1), u16(1, 0), u16(1), u32(offset, coded.length))
  const meta = (offset: number) => fullBox('meta', 0, 0, hdlr, pitm, iloc(offset), iinf, iprp)
  const dataOffset = ftyp.length + meta(0).length + 8
  return Buffer.concat([ftyp, meta(dataOffset), box('mdat', coded)])
}
