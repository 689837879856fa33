#!/usr/bin/env node
// The floor of bench/silver inside Node: only what libvips must do per image, through sharp
// (read the file, decode with EXIF orientation and shrink-on-load, resize to ≤ 512 px, encode
// JPEG q90, write), with as many images in flight as mlcap's silver stage keeps. No header
// read, no perceptual hashes or quality measures, no object store, no catalog. mlcap cannot
// be faster than this with the same decoder. Usage: sharpFloor.mjs OUT FILE...
import {readFile, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import sharp from 'sharp'

const [out, ...files] = process.argv.slice(2)
let next = 0
async function worker() {
  while (next < files.length) {
    const file = files[next++]
    const output = await sharp(await readFile(file), {sequentialRead: true})
      .autoOrient()
      .resize({width: 512, height: 512, fit: 'inside', withoutEnlargement: true})
      .jpeg({quality: 90})
      .toBuffer()
    await writeFile(path.join(out, path.basename(file)), output)
  }
}
await Promise.all(Array.from({length: Math.max(2, os.availableParallelism() * 2)}, worker))
