/**
 * Forcing data files to disk before the catalog commit that names them.
 *
 * The catalog (DuckDB) makes each commit durable itself. Without this, a power cut or an OS
 * crash shortly after a commit could leave the catalog naming Parquet files the page cache
 * had not written yet: empty or torn files, and a table no reader can open. So each data file
 * a commit adds is synced, and so is the staging folder holding it (its name is what the
 * next reader finds to finish the commit: reader.ts ensurePresent). A kill needs none of
 * this (the page cache survives a process); it is about the machine going down.
 *
 * Not synced: the image objects (one per image, written before their commit). Measured on
 * 2,000 photos, syncing them would add ~1.5 s to a ~3.5 s ingest. A power cut can leave the
 * newest ones empty; silver then rejects them as undecodable, and the repairs objects.ts
 * names (REPAIR_ORIGINAL, then REPAIR_DERIVATIVE) rewrite them.
 */
import {closeSync, fdatasyncSync, fsyncSync, openSync} from 'node:fs'
import path from 'node:path'

/** Forces `file`'s bytes to disk. */
export function syncFile(file: string): void {
  const fd = openSync(file, 'r')
  try {
    fdatasyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

/**
 * Forces the entries of `dir` (files created or renamed in it), and its own entry in its
 * parent, to disk. Where the platform or filesystem cannot sync a folder (Windows, some FUSE
 * and network filesystems refuse with one of NO_FOLDER_SYNC), this is skipped rather than
 * failing every commit: the files themselves are still synced.
 */
export function syncDir(dir: string): void {
  for (const d of [dir, path.dirname(dir)]) {
    let fd: number
    try {
      fd = openSync(d, 'r')
    } catch (error) {
      if (NO_FOLDER_SYNC.has((error as NodeJS.ErrnoException).code ?? '')) return
      throw error
    }
    try {
      fsyncSync(fd)
    } catch (error) {
      if (!NO_FOLDER_SYNC.has((error as NodeJS.ErrnoException).code ?? '')) throw error
    } finally {
      closeSync(fd)
    }
  }
}

const NO_FOLDER_SYNC = new Set(['EISDIR', 'EINVAL', 'EPERM', 'ENOTSUP', 'EBADF'])
