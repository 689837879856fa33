/**
 * Near-duplicate grouping for gold: images whose pHashes are within `maxDistance` bits
 * are linked, and linked images form one group (union-find: single linkage, so A~B and
 * B~C put A, B, C in one group even if A and C are further apart — what a split needs,
 * since no chain of near-copies may straddle train and test).
 *
 * Finding the pairs without comparing all n² of them: multi-index hashing. The 64-bit
 * hash is cut into m chunks, each indexed in a dense bucket table (2^bits buckets). By the
 * pigeonhole principle two hashes within distance d differ by at most ⌊d/m⌋ bits in at
 * least one chunk, so each hash looks up, in every chunk table, the buckets within
 * ⌊d/m⌋ bits of its own chunk value; candidates are checked with the full 64-bit
 * distance, and pairs already in one group are skipped. m is chosen per call from a cost
 * model (bucket look-ups + expected candidates + table size per hash), between 3 chunks of
 * 21–22 bits and 8 of 8 bits:
 *  - d < 4: 4 chunks of 16 bits, exact buckets (pure pigeonhole);
 *  - d = 8 (default), n = 100k: 3 chunks of 21/21/22 bits, radius 2: ~720 look-ups and
 *    ~35 candidates per hash. Measured on 100k random hashes, on 2 cores shared with other
 *    jobs (load average 6–10, so ±50%): 3 × 21/22 bits r2 ≈ 3.5 s, 5 × 13 bits r1 ≈ 3 s,
 *    4 × 16 bits r2 ≈ 6 s, 6 × 11 bits r1 ≈ 9–16 s, 8 × 8 bits r1 ≈ 50–100 s;
 *  - small n: smaller tables win; when the estimate exceeds n (d ≳ 24) or n < 64, every
 *    pair is compared.
 * A BK-tree was not used: at d = 8 it visits a large share of a 64-bit tree (distances
 * between random hashes concentrate around 32), and it is pointer-heavy in JS.
 *
 * Deterministic: the result does not depend on input order; a group's id is the
 * smallest sha256 in it (as a string).
 */
import {invalidParameter} from './errors.js'
import {DEFAULT_NEAR_DUPLICATE_DISTANCE, popcount32} from './perceptualHash.js'

export {DEFAULT_NEAR_DUPLICATE_DISTANCE}

export type HashedImage = {sha256: string; phash: bigint}

function binomialSum(bits: number, radius: number): number {
  let total = 0
  let c = 1
  for (let k = 0; k <= radius && k <= bits; k++) {
    total += c
    c = (c * (bits - k)) / (k + 1)
  }
  return total
}

/** All masks of `bits` bits with at most `radius` bits set, fewest bits first. */
function masksWithin(bits: number, radius: number): Int32Array {
  const out: number[] = [0]
  const extend = (mask: number, from: number, left: number): void => {
    if (left === 0) return
    for (let b = from; b < bits; b++) {
      out.push(mask | (1 << b))
      extend(mask | (1 << b), b + 1, left - 1)
    }
  }
  extend(0, 0, radius)
  return Int32Array.from(out)
}

type Plan = {widths: number[]; radius: number} | {bruteForce: true}

/** Chunk layout for n hashes and distance d with the lowest estimated cost per hash. */
export function planIndex(n: number, maxDistance: number): Plan {
  let best: {widths: number[]; radius: number; cost: number} | undefined
  for (let m = 3; m <= 8; m++) {
    const widths = Array.from({length: m}, (_, i) => Math.floor(64 / m) + (i >= m - (64 % m) ? 1 : 0))
    const radius = Math.floor(maxDistance / m)
    let cost = 0
    for (const w of widths) {
      const lookups = binomialSum(w, radius)
      cost += lookups + 3 * lookups * (n / 2 ** w) + 2 ** w / Math.max(1, n)
    }
    if (best === undefined || cost < best.cost) best = {widths, radius, cost}
  }
  if (n < 64 || best === undefined || best.cost > n) return {bruteForce: true}
  return {widths: best.widths, radius: best.radius}
}

/**
 * Map every sha256 to its group id (the smallest sha256 of its group). Images with no
 * near-duplicate map to themselves. The same sha256 given twice is one image.
 */
export function groupNearDuplicates(items: ReadonlyArray<HashedImage>, maxDistance: number = DEFAULT_NEAR_DUPLICATE_DISTANCE): Map<string, string> {
  if (!Number.isInteger(maxDistance) || maxDistance < 0 || maxDistance > 64) throw invalidParameter('maxDistance', 'integer between 0 and 64 (bits)', maxDistance)

  // Distinct images, in sha256 order (so everything below is independent of input order).
  const bySha = new Map<string, bigint[]>()
  for (const [index, item] of items.entries()) {
    if (typeof item?.sha256 !== 'string' || item.sha256 === '') throw invalidParameter(`items[${index}].sha256`, 'non-empty string', item?.sha256)
    if (typeof item.phash !== 'bigint' || item.phash < 0n || item.phash >= 1n << 64n)
      throw invalidParameter(`items[${index}].phash`, 'unsigned 64-bit bigint', item.phash)
    const list = bySha.get(item.sha256)
    if (list === undefined) bySha.set(item.sha256, [item.phash])
    else list.push(item.phash)
  }
  const shas = [...bySha.keys()].sort()
  // One entry per (sha, hash); an image listed twice with different hashes is joined to itself.
  const owner: number[] = []
  const hashes: bigint[] = []
  for (const [i, sha] of shas.entries()) for (const h of new Set(bySha.get(sha)!)) (owner.push(i), hashes.push(h))
  const n = hashes.length

  const parent = Int32Array.from({length: shas.length}, (_, i) => i)
  const find = (x: number): number => {
    while (parent[x] !== x) {
      parent[x] = parent[parent[x]!]!
      x = parent[x]!
    }
    return x
  }
  const union = (a: number, b: number): void => {
    const ra = find(a)
    const rb = find(b)
    if (ra === rb) return
    // The smaller index (= smaller sha256) becomes the root, so the root is the group id.
    if (ra < rb) parent[rb] = ra
    else parent[ra] = rb
  }
  for (let e = 1; e < n; e++) if (owner[e] === owner[e - 1]) union(owner[e]!, owner[e - 1]!)

  const hi = new Uint32Array(n)
  const lo = new Uint32Array(n)
  for (let e = 0; e < n; e++) {
    hi[e] = Number(hashes[e]! >> 32n)
    lo[e] = Number(hashes[e]! & 0xffffffffn)
  }
  const distance = (a: number, b: number): number => popcount32(hi[a]! ^ hi[b]!) + popcount32(lo[a]! ^ lo[b]!)
  const link = (a: number, b: number): void => {
    const oa = owner[a]!
    const ob = owner[b]!
    if (oa === ob || find(oa) === find(ob)) return
    if (distance(a, b) <= maxDistance) union(oa, ob)
  }

  const plan = planIndex(n, maxDistance)
  if ('bruteForce' in plan) {
    for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) link(a, b)
  } else {
    // Per chunk: each entry's chunk value, entries sorted by it (counting sort), bucket offsets.
    const keys: Int32Array[] = []
    const starts: Int32Array[] = []
    const members: Int32Array[] = []
    const masks: Int32Array[] = []
    let shift = 64
    for (const width of plan.widths) {
      shift -= width
      const mask = (1n << BigInt(width)) - 1n
      const key = new Int32Array(n)
      for (let e = 0; e < n; e++) key[e] = Number((hashes[e]! >> BigInt(shift)) & mask)
      const buckets = 2 ** width
      const start = new Int32Array(buckets + 1)
      for (let e = 0; e < n; e++) start[key[e]! + 1]!++
      for (let k = 0; k < buckets; k++) start[k + 1]! += start[k]!
      const fill = start.slice(0, buckets)
      const member = new Int32Array(n)
      for (let e = 0; e < n; e++) member[fill[key[e]!]!++] = e
      keys.push(key)
      starts.push(start)
      members.push(member)
      masks.push(masksWithin(width, plan.radius))
    }
    const seen = new Int32Array(n).fill(-1) // seen[b] === a: pair (a, b) already checked
    for (let a = 0; a < n; a++) {
      for (let c = 0; c < keys.length; c++) {
        const own = keys[c]![a]!
        const start = starts[c]!
        const member = members[c]!
        const near = masks[c]!
        for (let m = 0; m < near.length; m++) {
          const bucket = own ^ near[m]!
          for (let k = start[bucket]!, end = start[bucket + 1]!; k < end; k++) {
            const b = member[k]!
            if (b <= a || seen[b] === a) continue
            seen[b] = a
            link(a, b)
          }
        }
      }
    }
  }

  const groups = new Map<string, string>()
  for (const [i, sha] of shas.entries()) groups.set(sha, shas[find(i)]!)
  return groups
}
