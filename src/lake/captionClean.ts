/**
 * Caption cleaning: one pure function, identical wherever a caption comes from (sidecar
 * file, manifest, COCO, a captioning model). Silver records `CLEANING_VERSION` with every
 * cleaned caption, so a change to any rule below must bump it.
 *
 * Steps, in order:
 *  1. Text: bytes are decoded as UTF-8. An incomplete multi-byte sequence at the very end
 *     (a caption cut short at a byte limit) is dropped. If the bytes are not UTF-8 and
 *     contain no valid multi-byte sequence at all, they are decoded as Windows-1252 (the
 *     usual legacy encoding of scraped captions: `caf\xe9` → `café`). Otherwise invalid
 *     sequences become U+FFFD. Strings with lone surrogates are made well-formed the same
 *     way. U+FFFD characters are then removed; if they made up more than
 *     `MAX_REPLACEMENT_RATIO` of the characters the caption is rejected (`invalid_utf8`).
 *  2. Model special tokens (`<unk>`, `[UNK]`, `<|endoftext|>`, ...) anywhere → `not_a_caption`
 *     (checked before tags are stripped, as they look like tags).
 *  3. HTML: comments and `<script>`/`<style>`/... elements (with their contents) are
 *     removed, tags are removed (block-level tags and `<br>` become a space, others
 *     nothing), common named and all numeric character references are decoded. Repeated
 *     until nothing changes, so double-escaped markup (`&lt;b&gt;`) is removed too and
 *     cleaning is idempotent.
 *  4. Unicode NFKC (full-width letters and digits, ligatures, NBSP → ASCII forms).
 *  5. URLs (`scheme://...`, `www....`, base64 `data:` URIs) are removed; trailing sentence
 *     punctuation and an unbalanced closing bracket stay with the text; brackets left
 *     empty are removed.
 *  6. Control and invisible format characters are removed (C0/C1 controls except
 *     whitespace, ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, bidi marks and
 *     embeddings, tag characters: every `\p{Cf}`). Exception: a ZWJ between two emoji is
 *     kept, so emoji sequences such as 👨‍👩‍👧 stay one picture.
 *  7. Whitespace (spaces, tabs, newlines, U+2028/2029) collapses to one space.
 *  8. Punctuation spacing: no space before `, . ; : ! ?`; one space after `, ; : ! ?` when
 *     a letter follows (not a digit, so `10:30` and `1,000` stay; not a letter of a script
 *     written without spaces: Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar); one
 *     space after `.` when it ends a lowercase word of two or more letters and an
 *     uppercase letter follows (`dog.The` → `dog. The`, but `U.S.A.` and `3.5` stay).
 *  9. Trim; optional lowercase (`String#toLowerCase`, locale-independent on purpose).
 *
 * Then the checks: `empty`; `not_a_caption` (the frozen `NON_CAPTION_PATTERNS` table,
 * matched against the cleaned text); `too_short` (only when `minLength` is given);
 * `too_long`. Lengths count Unicode code points of the cleaned text.
 */

import {invalidParameter} from './errors.js'

/** Bump whenever any rule above changes; recorded with each silver caption as provenance. */
export const CLEANING_VERSION = 1

export const DEFAULT_MAX_CAPTION_LENGTH = 300

/** Share of U+FFFD replacement characters above which a caption is rejected as `invalid_utf8`. */
export const MAX_REPLACEMENT_RATIO = 0.1

export type CleanCaptionOptions = {
  /** Lower-case the cleaned text (default false). */
  lowercase?: boolean
  /** Longest accepted caption in code points after cleaning (default 300). */
  maxLength?: number
  /** Shortest accepted caption in code points after cleaning (default: no limit beyond non-empty). */
  minLength?: number
}

/** What silver and the caption stage clean with unless told otherwise (recorded with each run in this key order). */
export const DEFAULT_CLEAN_CAPTION_OPTIONS: Readonly<CleanCaptionOptions> = Object.freeze({lowercase: false, maxLength: DEFAULT_MAX_CAPTION_LENGTH})

export type CaptionRejectReason = 'empty' | 'too_short' | 'too_long' | 'not_a_caption' | 'invalid_utf8'

export type CleanCaptionResult =
  | {status: 'ok'; text: string; raw: string; words: number; tokens: number; repairedUtf8: boolean}
  | {status: 'rejected'; reason: CaptionRejectReason; message: string; raw: string}

export type NonCaptionPattern = Readonly<{
  /** Stable identifier, quoted in reject messages. */
  id: string
  /** `raw`: searched in the decoded text before HTML stripping; `clean`: matched against the cleaned text. */
  stage: 'raw' | 'clean'
  pattern: RegExp
  /** What it catches, with an example. */
  description: string
}>

/**
 * Texts that are not captions: what captioning services, scrapers and tokenizers emit in
 * place of one. `clean` patterns are anchored and matched against the cleaned text with
 * trailing `.!?` removed, case-insensitively; `raw` patterns are searched anywhere.
 */
export const NON_CAPTION_PATTERNS: readonly NonCaptionPattern[] = Object.freeze(
  (<NonCaptionPattern[]>[
    {
      id: 'model_special_token',
      stage: 'raw',
      pattern: /<\s*\/?\s*(?:unk|pad|s|bos|eos|mask|sep|cls|start|end|null)\s*>|\[(?:unk|pad|mask|sep|cls)\]|<\|[a-z_]+\|>/i,
      description: 'tokenizer special tokens left in model output: "<unk>", "</s>", "[UNK]", "<|endoftext|>"',
    },
    {
      id: 'generation_failed',
      stage: 'clean',
      pattern: /^(?:(?:sorry,? )?i )?(?:can'?t|can’t|cannot|could ?n[o']t|couldn’t|unable to|failed to|not able to) (?:generate|create|produce|describe|caption)(?: an?| the)?(?: caption| description)?(?: for (?:this|the) image)?$/i,
      description: 'a captioning service saying it failed: "Can\'t generate caption", "unable to generate a caption"',
    },
    {
      id: 'error_message',
      stage: 'clean',
      pattern: /^(?:\[\s*error\s*\].*|error|error\s*[:#].*|error - .*|error \d{3}\b.*|an error (?:has )?occurred.*|internal server error.*|exception:.*|traceback \(most recent call last\).*|timeout|timed out|request failed.*)$/i,
      description: 'error strings: "error", "[error] model timeout", "Error: 503", "An error occurred"',
    },
    {
      id: 'placeholder',
      stage: 'clean',
      pattern: /^(?:n\/?a|none|null|nil|nan|undefined|unknown|empty|blank|missing|todo|tbd|test|placeholder|untitled|no title|image|photo|picture|img|caption|description|alt|alt text|xxx+|asdf\w*|-+|\?+|\.+)$/i,
      description: 'placeholders: "n/a", "None", "null", "undefined", "untitled", "image", "-", "?"',
    },
    {
      id: 'caption_unavailable',
      stage: 'clean',
      pattern: /^(?:\[\s*)?(?:no |not )?(?:caption|description|alt text|image|title)s? (?:(?:is |was )?(?:un)?available|not (?:available|found|provided)|missing|pending|unavailable)(?:\s*\])?$|^\[\s*no (?:caption|description)\s*\]$|^no (?:caption|description|alt text)$/i,
      description: '"caption unavailable", "no caption available", "image not available", "[no caption]"',
    },
    {
      id: 'lorem_ipsum',
      stage: 'clean',
      pattern: /\blorem ipsum\b|^lorem\b/i,
      description: 'filler text: "Lorem ipsum dolor sit amet"',
    },
    {
      id: 'camera_file_name',
      stage: 'clean',
      pattern: /^(?:img|dsc[nf]?|pxl|dji|gopr|mvimg|screenshot|image|photo|pic)[ _-]?\d[\w-]*(?:\.(?:jpe?g|png|gif|webp|heic|tiff?))?$|^p\d{7}(?:\.jpe?g)?$|^[\w-]+\.(?:jpe?g|png|gif|webp|heic|tiff?|bmp)$/i,
      description: 'a file name instead of a caption: "IMG_1234.JPG", "DSC0001", "photo.png"',
    },
    {
      id: 'no_letters',
      stage: 'clean',
      pattern: /^[^\p{L}]*$/u,
      description: 'no letter at all: digits, punctuation or emoji only ("12345", "🐶🐶", "...")',
    },
  ]).map((p) => Object.freeze(p)),
)

// --- step 1: text -------------------------------------------------------------------------

const REPLACEMENT = '\uFFFD'
const utf8Fatal = new TextDecoder('utf-8', {fatal: true, ignoreBOM: false})
const utf8Lossy = new TextDecoder('utf-8', {fatal: false, ignoreBOM: false})
const windows1252 = new TextDecoder('windows-1252')
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** Length of an incomplete UTF-8 multi-byte sequence at the end of `bytes` (0 if none). */
function incompleteTail(bytes: Uint8Array): number {
  for (let back = 1; back <= 3 && back <= bytes.length; back++) {
    const b = bytes[bytes.length - back]!
    if ((b & 0xc0) === 0x80) continue // continuation byte: keep looking for the lead
    const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1
    return need > back ? back : 0
  }
  return 0
}

function decodeText(raw: string | Uint8Array): {text: string; repaired: boolean} {
  if (typeof raw === 'string') {
    const text = raw.replace(LONE_SURROGATE, REPLACEMENT)
    return {text, repaired: text !== raw}
  }
  try {
    return {text: utf8Fatal.decode(raw), repaired: false}
  } catch {
    // Not valid UTF-8: repaired below, by one of three rules.
  }
  const tail = incompleteTail(raw)
  if (tail > 0) {
    const trimmed = raw.subarray(0, raw.length - tail)
    try {
      return {text: utf8Fatal.decode(trimmed), repaired: true}
    } catch {
      // More damage than a cut-off end: fall through.
    }
  }
  const lossy = utf8Lossy.decode(raw)
  const hasValidMultiByte = /[^\u0000-\u007f\uFFFD]/u.test(lossy)
  if (!hasValidMultiByte) return {text: windows1252.decode(raw), repaired: true}
  return {text: lossy, repaired: true}
}

// --- step 3: HTML -------------------------------------------------------------------------

const NAMED_ENTITIES: Readonly<Record<string, string>> = Object.freeze({
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ', ensp: ' ', emsp: ' ', thinsp: ' ',
  ndash: '–', mdash: '—', hellip: '…', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«',
  raquo: '»', bull: '•', middot: '·', copy: '©', reg: '®', trade: '™', deg: '°', times: '×',
  divide: '÷', plusmn: '±', frac12: '½', frac14: '¼', frac34: '¾', euro: '€', pound: '£', yen: '¥',
  cent: '¢', sect: '§', para: '¶', shy: '\u00ad', zwj: '\u200d', zwnj: '\u200c',
  agrave: 'à', aacute: 'á', acirc: 'â', atilde: 'ã', auml: 'ä', aring: 'å', aelig: 'æ', ccedil: 'ç',
  egrave: 'è', eacute: 'é', ecirc: 'ê', euml: 'ë', igrave: 'ì', iacute: 'í', icirc: 'î', iuml: 'ï',
  ntilde: 'ñ', ograve: 'ò', oacute: 'ó', ocirc: 'ô', otilde: 'õ', ouml: 'ö', oslash: 'ø', ugrave: 'ù',
  uacute: 'ú', ucirc: 'û', uuml: 'ü', yacute: 'ý', yuml: 'ÿ', szlig: 'ß',
  Agrave: 'À', Aacute: 'Á', Acirc: 'Â', Atilde: 'Ã', Auml: 'Ä', Aring: 'Å', AElig: 'Æ', Ccedil: 'Ç',
  Egrave: 'È', Eacute: 'É', Ecirc: 'Ê', Euml: 'Ë', Igrave: 'Ì', Iacute: 'Í', Icirc: 'Î', Iuml: 'Ï',
  Ntilde: 'Ñ', Ograve: 'Ò', Oacute: 'Ó', Ocirc: 'Ô', Otilde: 'Õ', Ouml: 'Ö', Oslash: 'Ø', Ugrave: 'Ù',
  Uacute: 'Ú', Ucirc: 'Û', Uuml: 'Ü', Yacute: 'Ý',
})

const ELEMENTS_WITH_HIDDEN_CONTENT = /<(script|style|noscript|template|iframe|object|head|title)\b[^>]*>[\s\S]*?<\/\1\s*>/gi
const UNCLOSED_HIDDEN = /<(?:script|style|noscript|template|iframe|object)\b[^>]*>[\s\S]*$/i
const COMMENT = /<!--[\s\S]*?(?:-->|$)|<!\[CDATA\[[\s\S]*?\]\]>|<![a-z][^>]*>|<\?[^>]*>/gi
const BLOCK_TAGS = new Set(
  'address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td tfoot th thead tr ul'.split(' '),
)
const TAG = /<\/?([a-z][a-z0-9-]*)\b(?:[^<>"']|"[^"]*"|'[^']*')*\/?>/gi
const ENTITY = /&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z][a-zA-Z0-9]{1,31}));?/g

function decodeEntities(text: string): string {
  return text.replace(ENTITY, (match, dec: string | undefined, hex: string | undefined, name: string | undefined) => {
    if (name !== undefined) {
      // Named references need their semicolon, except the few browsers accept without.
      const value = NAMED_ENTITIES[name]
      if (value === undefined) return match
      if (!match.endsWith(';') && !['amp', 'lt', 'gt', 'quot', 'nbsp'].includes(name)) return match
      return value
    }
    const code = dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex!, 16)
    if (code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return ''
    return String.fromCodePoint(code)
  })
}

function stripHtml(text: string): string {
  for (let round = 0; round < 16; round++) {
    const next = decodeEntities(
      text
        .replace(ELEMENTS_WITH_HIDDEN_CONTENT, ' ')
        .replace(UNCLOSED_HIDDEN, ' ')
        .replace(COMMENT, ' ')
        .replace(TAG, (_m, name: string) => (BLOCK_TAGS.has(name.toLowerCase()) ? ' ' : '')),
    )
    if (next === text) break
    text = next
  }
  return text
}

// --- steps 5–8 ----------------------------------------------------------------------------

const URL = /\b(?:https?|ftp|file|s3|gs):\/\/[^\s<>"]+|\bwww\.[^\s<>"]+\.[^\s<>"]+|\bdata:[a-z]+\/[a-z0-9.+-]+;base64,[a-z0-9+/=]+/gi

function stripUrls(text: string): string {
  return text.replace(URL, (url) => {
    // Keep trailing sentence punctuation, and a closing bracket the URL did not open.
    let end = url.length
    for (;;) {
      const ch = url[end - 1]!
      if ('.,;:!?\'"'.includes(ch)) end--
      else if (ch === ')' && count(url.slice(0, end), '(') < count(url.slice(0, end), ')')) end--
      else if (ch === ']' && count(url.slice(0, end), '[') < count(url.slice(0, end), ']')) end--
      else break
      if (end === 0) break
    }
    return ' ' + url.slice(end)
  })
}

/** Brackets left empty once a URL or markup inside them is gone: `(https://…)` → ``. */
const EMPTY_BRACKETS = /\(\s*\)|\[\s*\]|\{\s*\}/g

function count(text: string, ch: string): number {
  let n = 0
  for (const c of text) if (c === ch) n++
  return n
}

const EMOJI_ZWJ = /(?<=[\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F])\u200D(?=\p{Extended_Pictographic})/gu
const KEEP_ZWJ = '\u{F0000}' // private-use placeholder, put back after removal
const INVISIBLE = /[\p{Cf}\u0000-\u0008\u000B\u000E-\u001F\u007F-\u009F\uFFFD\uFFF9-\uFFFB]/gu
const C0_WHITESPACE_CONTROLS = /[\t\n\v\f\r\u0085]/g

function removeInvisible(text: string): string {
  return text
    .replace(C0_WHITESPACE_CONTROLS, ' ')
    .replace(EMOJI_ZWJ, KEEP_ZWJ)
    .replace(INVISIBLE, '')
    .replaceAll(KEEP_ZWJ, '\u200D')
}

const NO_SPACE_SCRIPTS = '\\p{Script=Han}\\p{Script=Hiragana}\\p{Script=Katakana}\\p{Script=Thai}\\p{Script=Lao}\\p{Script=Khmer}\\p{Script=Myanmar}'
const SPACE_BEFORE_PUNCT = / +(?=[,.;:!?])/g
const SPACE_AFTER_PUNCT = new RegExp(`([,;:!?])(?=(?![${NO_SPACE_SCRIPTS}])\\p{L})`, 'gu')
const SPACE_AFTER_PERIOD = /(?<=(?<![\p{L}.])\p{Ll}{2,})\.(?=\p{Lu}\p{Ll})/gu

function fixPunctuationSpacing(text: string): string {
  return text.replace(SPACE_BEFORE_PUNCT, '').replace(SPACE_AFTER_PUNCT, '$1 ').replace(SPACE_AFTER_PERIOD, '. ')
}

// --- counting -----------------------------------------------------------------------------

/**
 * Tokenizer used for `tokens`: a token is a run of letters, combining marks and digits
 * (with inner apostrophes: `dog's`, `don’t` are one token), or one emoji (with its
 * modifiers, variation selectors and ZWJ sequence), or any other single non-space
 * character (each punctuation mark or symbol). A number with inner `.`, `,` or `:`
 * (`3.5`, `1,000`, `10:30`) is one token. A run of CJK characters counts as one token.
 */
const TOKEN =
  /\p{N}+(?:[.,:]\p{N}+)+|[\p{L}\p{M}\p{N}]+(?:['’][\p{L}\p{M}\p{N}]+)*|\p{Extended_Pictographic}[\p{Emoji_Modifier}\uFE0F\u20E3]*(?:\u200D\p{Extended_Pictographic}[\p{Emoji_Modifier}\uFE0F]*)*|\p{Regional_Indicator}{1,2}|\S/gu

export function countTokens(text: string): number {
  return text.match(TOKEN)?.length ?? 0
}

export function countWords(text: string): number {
  return text.split(/\s+/u).filter((w) => w !== '').length
}

function codePoints(text: string): number {
  let n = 0
  for (const _ of text) n++
  return n
}

function preview(text: string, max = 60): string {
  const chars = [...text]
  return JSON.stringify(chars.length > max ? chars.slice(0, max).join('') + '…' : text)
}

// --- the function -------------------------------------------------------------------------

/**
 * Clean one caption. Never throws for bad captions (they come back `rejected` with a reason
 * and a message); throws `invalidParameter` only for bad options.
 */
export function cleanCaption(raw: string | Uint8Array, opts: CleanCaptionOptions = {}): CleanCaptionResult {
  const maxLength = opts.maxLength ?? DEFAULT_MAX_CAPTION_LENGTH
  const minLength = opts.minLength ?? 1
  if (!Number.isInteger(maxLength) || maxLength < 1) throw invalidParameter('maxLength', 'positive integer', maxLength)
  if (!Number.isInteger(minLength) || minLength < 0 || minLength > maxLength)
    throw invalidParameter('minLength', `integer between 0 and maxLength (${maxLength})`, minLength)

  const decoded = decodeText(raw)
  const rawText = decoded.text
  const reject = (reason: CaptionRejectReason, message: string): CleanCaptionResult => ({status: 'rejected', reason, message, raw: rawText})

  let replacements = 0
  for (const ch of rawText) if (ch === REPLACEMENT) replacements++
  const total = codePoints(rawText)
  if (replacements > 0 && replacements > total * MAX_REPLACEMENT_RATIO) {
    return reject(
      'invalid_utf8',
      `silver: caption ${preview(rawText)} has ${replacements} invalid UTF-8 sequences in ${total} characters (more than ${MAX_REPLACEMENT_RATIO * 100}%); expected UTF-8 text. Re-export the captions as UTF-8 and ingest them again.`,
    )
  }

  const light = removeInvisible(rawText).normalize('NFKC')
  for (const p of NON_CAPTION_PATTERNS) {
    if (p.stage === 'raw' && p.pattern.test(light)) return notACaption(rawText, p, reject)
  }

  let text = stripHtml(removeInvisible(rawText))
  text = text.normalize('NFKC')
  text = stripUrls(text)
  text = removeInvisible(text).replace(EMPTY_BRACKETS, ' ')
  text = text.replace(/\s+/gu, ' ')
  text = fixPunctuationSpacing(text).trim()
  if (opts.lowercase === true) text = text.toLowerCase()

  if (text === '') {
    return reject(
      'empty',
      `silver: caption ${preview(rawText)} is empty after cleaning (markup, URLs, invisible characters and whitespace removed); expected some text. Fix or drop the caption at its source.`,
    )
  }
  const probe = text.replace(/[.!?]+$/u, '')
  for (const p of NON_CAPTION_PATTERNS) {
    if (p.stage === 'clean' && p.pattern.test(probe)) return notACaption(text, p, reject)
  }
  const length = codePoints(text)
  if (length < minLength) {
    return reject(
      'too_short',
      `silver: caption ${preview(text)} is ${length} characters after cleaning; expected at least minLength ${minLength}. Lower minLength or drop the caption.`,
    )
  }
  if (length > maxLength) {
    return reject(
      'too_long',
      `silver: caption ${preview(text)} is ${length} characters after cleaning; expected at most maxLength ${maxLength}. Raise maxLength or shorten the caption at its source.`,
    )
  }
  return {status: 'ok', text, raw: rawText, words: countWords(text), tokens: countTokens(text), repairedUtf8: decoded.repaired || replacements > 0}
}

function notACaption(
  text: string,
  p: NonCaptionPattern,
  reject: (reason: CaptionRejectReason, message: string) => CleanCaptionResult,
): CleanCaptionResult {
  return reject(
    'not_a_caption',
    `silver: caption ${preview(text)} matches non-caption pattern "${p.id}" (${p.description}); expected a description of the image. Re-run the captioner or fix the caption at its source.`,
  )
}

