/**
 * Reason codes for inputs that ingest refuses. Every row of `bronze.rejects` carries one
 * of these codes plus a human message naming the file and what to do. The codes are a
 * stable contract (scripts and dashboards group by them): add new ones, never rename.
 */
export const REJECT_REASONS = Object.freeze({
  // --- the bytes of an image file ---
  empty_file: 'The file is zero bytes long.',
  not_an_image: 'The file does not start with the signature of any supported image format.',
  svg_refused: 'The file is SVG/XML; vector images are refused because rendering them is a security risk.',
  unsupported_format: 'The file is an image, but in a format mlcap does not ingest.',
  truncated: 'The image file is cut short (e.g. a JPEG without its end marker, a PNG without IEND).',
  too_many_pixels: 'The image declares more pixels than the --max-pixels limit (possible decompression bomb).',
  corrupt_header: 'The image header could not be decoded.',
  // --- the file system ---
  unreadable: 'The file or folder could not be read (permissions or I/O error).',
  file_vanished: 'The file disappeared between being listed and being read.',
  symlink_outside_root: 'A symbolic link points outside the folders given to ingest; it is not followed.',
  symlink_loop: 'A symbolic link leads back into a folder already being walked, or a chain of links never ends.',
  symlink_broken: 'A symbolic link points to something that does not exist.',
  not_a_regular_file: 'The entry is a socket, FIFO or device, not a regular file; it is not read.',
  name_not_utf8: 'The file or folder name is not valid UTF-8 (another encoding, e.g. Latin-1), so it cannot be recorded as a path; rename it.',
  // --- caption manifests and sidecars ---
  manifest_missing_file: 'A caption manifest names an image file that does not exist.',
  manifest_path_escape: "A caption manifest names a path outside the manifest's folder (absolute or '..').",
  malformed_jsonl: 'A line of a JSONL caption manifest is not a valid JSON object with file_name and text/caption.',
  malformed_csv: 'A CSV caption manifest or one of its rows is not valid RFC 4180 CSV with file_name and text/caption.',
  malformed_coco: 'A COCO captions file, or one of its images/annotations, does not have the expected shape.',
  caption_invalid_utf8: 'A caption file or caption text is not valid UTF-8.',
  caption_too_large: 'A caption is larger than the caption size limit.',
  caption_without_image: 'A caption sidecar has no image beside it with the same name.',
} as const)

export type RejectReason = keyof typeof REJECT_REASONS
