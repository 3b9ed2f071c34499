/**
 * Hand-written TypeScript types of the `sealmail` package: documents, Mongo-style filters,
 * updates and options, and error codes. `index.d.ts` (generated from the Rust binding)
 * re-exports everything here. Filters use `NoInfer`, so TypeScript 5.4 or newer is needed.
 */

/** Any JSON value, as documents and query results hold them. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/** A document of a collection: field names to JSON values. */
export interface Document {
  [field: string]: JsonValue | undefined
}

/**
 * A date as the query layer stores it: ISO-8601 UTC text (`2026-11-28T20:25:50Z`), so text
 * order is time order. In filters a date may also be given as extended JSON `{ $date: ... }`.
 */
export type DateText = string

/** Bytes in extended JSON, as fields of type `binary` read and write them. */
export interface BinaryValue {
  $binary: { base64: string; subType: string }
}

/** The JSON types a `$type` filter can test for. */
export type TypeName =
  | 'string'
  | 'number'
  | 'int'
  | 'long'
  | 'double'
  | 'decimal'
  | 'bool'
  | 'boolean'
  | 'null'
  | 'array'
  | 'object'
  | 'date'
  | 'binData'

/** Extended JSON literals: a date (`{ $date: '2026-11-28T00:00:00Z' }`) or bytes. */
export type ExtendedLiteral = { $date: string | number } | BinaryValue

/**
 * An object compared whole. Its top-level keys may not start with `$`, which marks operators,
 * so a misspelt operator is a type error rather than an equality test.
 */
export type ObjectLiteral = { [key: string]: JsonValue } & { [key: `$${string}`]: never }

/** A value a filter may compare an untyped field with. */
export type FilterLiteral = string | number | boolean | null | JsonValue[] | ObjectLiteral | ExtendedLiteral

/** The element type of an array type, else `never`. */
type ElementOf<V> = V extends readonly (infer E)[] ? E : never

/**
 * What a field of type `V` may be compared with: a `V`, or one element of it when it is an
 * array (`{ keywords: '$Forwarded' }` matches a message with that keyword), or `null` (absent).
 * Untyped fields (plain `Document`s) take any `FilterLiteral`.
 */
export type Literal<V> = JsonValue extends V | null
  ? FilterLiteral
  : NonNullable<V> | ElementOf<NonNullable<V>> | null | ExtendedLiteral

/** Operators on one field. Several in one object must all hold (`{ $gt: 1, $lt: 5 }`). */
export interface Condition<V = JsonValue> {
  /** Equal (for arrays: one element equals, or the whole array equals). */
  $eq?: Literal<V>
  $ne?: Literal<V>
  $gt?: Literal<V>
  $gte?: Literal<V>
  $lt?: Literal<V>
  $lte?: Literal<V>
  /** Equal to one of these. */
  $in?: Literal<V>[]
  $nin?: Literal<V>[]
  /** An array field holding every one of these. */
  $all?: Literal<V>[]
  /** The field is present (`true`) or absent (`false`). */
  $exists?: boolean
  $type?: TypeName
  /** A regular expression (Rust `regex` syntax, no look-around). */
  $regex?: string
  /** Regex flags: `i`, `m`, `s`, `x`. Only with `$regex`. */
  $options?: string
  /** SQL LIKE pattern (`%` any run, `_` one character), case-sensitive. */
  $like?: string
  /** SQL LIKE pattern, case-insensitive (ASCII). */
  $ilike?: string
  /** Negate a condition: `{ $not: { $gt: 5 } }`. */
  $not?: Condition<V>
  /** An array field with an element that matches. */
  $elemMatch?: Condition | Filter<any>
  /** An array field with exactly this many elements. */
  $size?: number
}

/** A field's value: a literal (equality) or a condition. */
export type FieldFilter<V = JsonValue> = Literal<V> | Condition<V>

/**
 * A Mongo-style filter: `{ folder: 'INBOX', seen: false, size: { $gt: 1000 } }`. Dotted paths
 * reach inside JSON fields (`'from.address'`). `$and`, `$or` and `$nor` combine filters.
 * Unknown fields are refused with the code `UNKNOWN_FIELD`. With a document type `T`, the
 * values of its fields are type-checked.
 */
export type Filter<T extends Document = Document> = {
  [K in keyof T]?: FieldFilter<T[K]>
} & {
  [path: string]: FieldFilter | Filter<T>[] | undefined
  $and?: Filter<T>[]
  $or?: Filter<T>[]
  $nor?: Filter<T>[]
}

/** `{ field: 1 }` keeps fields (plus the key unless `{ _id: 0 }` / `{ id: 0 }`); `{ field: 0 }` drops them. */
export type Projection<T extends Document = Document> = {
  [K in keyof T | string]?: 0 | 1 | boolean
}

/** `{ field: 1 }` ascending, `{ field: -1 }` descending; keys in order. Ties break on the key. */
export type Sort<T extends Document = Document> = {
  [K in keyof T | string]?: 1 | -1
}

/** Options of `findOne`. */
export interface FindOneOptions<T extends Document = Document> {
  projection?: Projection<T>
  sort?: Sort<T>
  /** Documents to skip first. */
  skip?: number
}

/** Options of `find`. */
export interface FindOptions<T extends Document = Document> extends FindOneOptions<T> {
  /** At most this many documents. */
  limit?: number
}

/** A Mongo-style update: `{ $set: { title: 'x' }, $inc: { n: 1 } }`. */
export interface Update<T extends Document = Document> {
  $set?: Partial<T> & Document
  $unset?: { [K in keyof T | string]?: '' | 1 | true }
  $inc?: { [K in keyof T | string]?: number }
  $mul?: { [K in keyof T | string]?: number }
  $min?: Partial<T> & Document
  $max?: Partial<T> & Document
  /** `{ old: 'new' }` */
  $rename?: { [K in keyof T | string]?: string }
  /** Set to the current time (`true` or `{ $type: 'date' }`). */
  $currentDate?: { [K in keyof T | string]?: true | { $type: 'date' } }
  /** Append to an array (`{ tags: 'x' }` or `{ tags: { $each: ['x', 'y'], $slice: -10 } }`). */
  $push?: Document
  /** Append values not yet present. */
  $addToSet?: Document
  /** Remove matching elements. */
  $pull?: Document
  /** Remove the first (`-1`) or last (`1`) element. */
  $pop?: { [K in keyof T | string]?: 1 | -1 }
}

/** Options of `updateOne` / `updateMany`. */
export interface UpdateOptions {
  /** Insert a document built from the filter's equalities and the update when none matches. */
  upsert?: boolean
}

/** The type of a declared field. */
export type FieldType = 'text' | 'integer' | 'real' | 'boolean' | 'date' | 'binary' | 'json'

/** An index: a field, a list of fields, or an object with `unique`. */
export type IndexDefinition =
  | string
  | string[]
  | { fields: string[] | { [field: string]: 1 | -1 }; unique?: boolean }

/**
 * An application collection: `{ fields: { title: 'text', n: { type: 'integer' } }, indexes:
 * ['n', { fields: ['title'], unique: true }] }`. `_id` (24 hex digits) is implicit.
 */
export interface CollectionDefinition {
  fields: { [field: string]: FieldType | { type: FieldType } }
  indexes?: IndexDefinition[]
}

/**
 * A message as the built-in, read-only `messages` collection shows it. Flags are changed and
 * messages stored through the mailbox API (which bumps MODSEQ), never through updates.
 */
export interface MessageDocument extends Document {
  id: number
  uid: number
  folder_id: number
  /** Folder path, e.g. `INBOX` or `Archive/2026`. */
  folder: string
  modseq: number
  seen: boolean
  answered: boolean
  flagged: boolean
  deleted: boolean
  draft: boolean
  keywords: string[]
  internal_date: DateText
  saved_at: DateText
  /** The `Date:` header, normalized to UTC; `null` when absent or unreadable. */
  date: DateText | null
  size: number
  subject: string | null
  from: Array<{ name: string | null; address: string | null }>
  sender: Array<{ name: string | null; address: string | null }>
  reply_to: Array<{ name: string | null; address: string | null }>
  to: Array<{ name: string | null; address: string | null }>
  cc: Array<{ name: string | null; address: string | null }>
  bcc: Array<{ name: string | null; address: string | null }>
  message_id: string | null
  in_reply_to: string | null
  references: string[] | null
  thread_id: number | null
  has_attachment: boolean
  /** The first characters of the text body. */
  preview: string | null
}

/**
 * The `code` of every `Error` sealmail rejects with. Branch on it, not on the message.
 *
 * - `WRONG_PASSWORD`: wrong password, or unknown address (deliberately the same).
 * - `CLOSED`: the `Mailbox` was used after `close()`.
 * - `UNKNOWN_FIELD`, `UNKNOWN_COLLECTION`, `UNKNOWN_OPERATOR`, `INVALID_QUERY`,
 *   `QUERY_TOO_COMPLEX`, `READ_ONLY_COLLECTION`, `DESTRUCTIVE_SCHEMA_CHANGE`, `DUPLICATE_KEY`:
 *   a query the query layer refused.
 * - `QUOTA_EXCEEDED`, `MESSAGE_TOO_LARGE`: a write that would exceed the account's limits.
 * - `CORRUPT`: a mailbox file that does not open with its key or fails its checks.
 * - `INTERNAL`: a bug in sealmail; please report it.
 */
export type ErrorCode =
  | 'WRONG_PASSWORD'
  | 'INVALID_ADDRESS'
  | 'ADDRESS_EXISTS'
  | 'CORRUPT'
  | 'SEALED_ITEM_CORRUPT'
  | 'SCHEMA_TOO_NEW'
  | 'QUOTA_EXCEEDED'
  | 'MESSAGE_TOO_LARGE'
  | 'NO_SUCH_FOLDER'
  | 'FOLDER_EXISTS'
  | 'FOLDER_NOT_ALLOWED'
  | 'INVALID_FOLDER_NAME'
  | 'NO_SUCH_MESSAGE'
  | 'WRONG_RECOVERY_CODE'
  | 'REGISTRY_MISSING'
  | 'NO_SUCH_ACCOUNT'
  | 'KEY_ROTATION'
  | 'CONCURRENT_UPDATE'
  | 'INVALID_ARGUMENT'
  | 'DATABASE'
  | 'IO'
  | 'CRYPTO'
  | 'NO_SUCH_BACKUP'
  | 'BACKUP_DAMAGED'
  | 'BACKUP_IN_PROGRESS'
  | 'MAILBOX_IN_USE'
  | 'INSUFFICIENT_SPACE'
  | 'BACKUP_STORAGE'
  | 'UNSUPPORTED_TARGET'
  | 'INVALID_ARCHIVE'
  | 'UNKNOWN_COLLECTION'
  | 'UNKNOWN_FIELD'
  | 'UNKNOWN_OPERATOR'
  | 'INVALID_QUERY'
  | 'QUERY_TOO_COMPLEX'
  | 'READ_ONLY_COLLECTION'
  | 'DESTRUCTIVE_SCHEMA_CHANGE'
  | 'DUPLICATE_KEY'
  | 'CLOSED'
  | 'INTERNAL'

/** An `Error` from sealmail. */
export interface SealmailError extends Error {
  code: ErrorCode
}
