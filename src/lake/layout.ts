import path from 'node:path'

/**
 * Where everything lives inside a lake folder. Paths are absolute so that they can be
 * stored in the catalog and handed to DuckDB unchanged.
 *
 *   <lake>/catalog.duckdb            commits, data files, runs, keys (DuckDB)
 *   <lake>/objects/ab/abcdef…        immutable bytes, content-addressed by SHA-256
 *   <lake>/<layer>/<table>/*.parquet table data files (only committed files are moved here)
 *   <lake>/_staging/<txid>/          work in flight; promoted by a commit or removed by gc
 *   <lake>/_retired/…                data files a commit replaced; removed by gc
 */
export class LakeLayout {
  readonly root: string
  /** `<lake>/objects/`, for objectPath. */
  private readonly objectsPrefix: string

  constructor(root: string) {
    this.root = path.resolve(root)
    this.objectsPrefix = this.objectsDir + path.sep
  }

  get catalogPath(): string {
    return path.join(this.root, 'catalog.duckdb')
  }

  get objectsDir(): string {
    return path.join(this.root, 'objects')
  }

  get stagingDir(): string {
    return path.join(this.root, '_staging')
  }

  /** Data files retired by a commit (rebuilds, compaction), kept until gc. */
  get retiredDir(): string {
    return path.join(this.root, '_retired')
  }

  /**
   * The form a data file's path takes in the catalog: relative to the lake root (with '/'),
   * so a lake folder can be moved, copied or mounted elsewhere and still open.
   */
  toCatalogPath(file: string): string {
    return path.relative(this.root, file).split(path.sep).join('/')
  }

  /** A catalog path made absolute (older catalogs stored absolute paths: kept as they are). */
  fromCatalogPath(stored: string): string {
    return path.isAbsolute(stored) ? stored : path.join(this.root, ...stored.split('/'))
  }

  /** Whether `file` (resolved from the working directory) is the lake folder or inside it. */
  contains(file: string): boolean {
    const inside = path.relative(this.root, path.resolve(file))
    return inside === '' || (inside !== '..' && !inside.startsWith(`..${path.sep}`) && !path.isAbsolute(inside))
  }

  /** `<lake>/objects/<sha256[0:2]>/<sha256>`. Concatenated, not path.join'ed: export asks for one per image (~2 µs each with join). */
  objectPath(sha256: string): string {
    return `${this.objectsPrefix}${sha256.slice(0, 2)}${path.sep}${sha256}`
  }

  /** `bronze.images` → `<lake>/bronze/images` */
  tableDir(tableId: string): string {
    const [layer, name] = tableId.split('.')
    return path.join(this.root, layer, name)
  }
}

export const DEFAULT_LAKE = 'data/lake'

/** The lake folder a command uses: the flag, then MLCAP_LAKE, then ./data/lake. */
export function resolveLakeRoot(flag?: string): string {
  return path.resolve(flag ?? process.env.MLCAP_LAKE ?? DEFAULT_LAKE)
}
