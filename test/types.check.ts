// Compiled (never run) by `npm test`: the published types accept what the API accepts and
// refuse what it refuses. Each `@ts-expect-error` fails the build if the error goes away.
import { Mailbox, Registry, deliver } from '..'
import type { Filter, MessageDocument, SealmailError, ErrorCode, Document } from '..'

interface Contact extends Document {
  _id?: string
  email: string
  visits: number
  tags?: string[]
}

export async function typed(dataDir: string): Promise<void> {
  const registry: Registry = await Registry.open(dataDir)
  const account = await registry.addAccount('a@example.com', { quota: 1_000_000, recoveryCode: true })
  const password: string | undefined = account.password
  const ok: boolean = await registry.verify('a@example.com', password ?? '')
  void ok
  const mailbox = await Mailbox.open(dataDir, 'a@example.com', password ?? '')
  const { uid } = await mailbox.append('INBOX', Buffer.from('Subject: x\r\n\r\n'), { flags: ['\\Seen'], internalDate: new Date() })
  await mailbox.append('INBOX', Buffer.from('x'), { internalDate: Date.now() })
  const raw: Buffer = await mailbox.fetchRaw(uid, 'INBOX')
  void raw

  const unseen: Filter<MessageDocument> = { folder: 'INBOX', seen: false, size: { $gt: 1000 }, $or: [{ subject: { $regex: '^re:', $options: 'i' } }] }
  const messages = await mailbox.find<MessageDocument>('messages', unseen, { projection: { uid: 1, subject: 1 }, sort: { uid: -1 }, limit: 10 })
  const subject: string | null = messages[0].subject
  void subject
  const first: MessageDocument | null = await mailbox.findOne<MessageDocument>('messages', { uid: { $in: [1, 2] } })
  void first
  const count: number = await mailbox.count('messages', { 'from.address': 'x@example.org' })
  void count

  await mailbox.defineCollection('contacts', { fields: { email: 'text', visits: 'integer', tags: 'json' }, indexes: [{ fields: ['email'], unique: true }] })
  const id: string = await mailbox.insertOne<Contact>('contacts', { email: 'b@example.org', visits: 1 })
  void id
  const result = await mailbox.updateMany<Contact>('contacts', { visits: { $lt: 5 } }, { $inc: { visits: 1 }, $push: { tags: 'x' } }, { upsert: false })
  const matched: number = result.matched
  void matched
  const deleted: number = await mailbox.deleteMany<Contact>('contacts', { email: { $like: '%@example.org' } })
  void deleted
  const quota = await mailbox.quota()
  const limit: number | undefined = quota.limitBytes
  void limit
  const folders = await mailbox.folders()
  const path: string = folders[0].path
  void path
  const queueId: string = await deliver(dataDir, 'a@example.com', Buffer.from('x'))
  void queueId
  const backedUp = await mailbox.backup('file:///var/backups/sealmail', { keepDaily: 7 })
  const skipped: boolean = backedUp.skipped
  const hash: string = backedUp.hash
  const size: number = backedUp.size
  const objectKey: string = backedUp.objectKey
  void skipped, hash, size, objectKey
  await registry.removeAccount('a@example.com', { purgeBackups: 'file:///var/backups/sealmail' })
  await registry.removeAccount('b@example.com')
  const unsupported: ErrorCode = 'UNSUPPORTED_TARGET'
  void unsupported

  try {
    await mailbox.close()
  } catch (error) {
    const code: ErrorCode = (error as SealmailError).code
    void code
  }

  // @ts-expect-error: a Contact's `visits` is a number
  await mailbox.find<Contact>('contacts', { visits: 'many' })
  // @ts-expect-error: $size takes a number
  await mailbox.find('messages', { keywords: { $size: 'two' } })
  // @ts-expect-error: sort directions are 1 or -1
  await mailbox.find('messages', {}, { sort: { uid: 'desc' } })
  // @ts-expect-error: raw messages are Buffers
  await mailbox.append('INBOX', 'Subject: x')
  // @ts-expect-error: field types are a fixed set
  await mailbox.defineCollection('bad', { fields: { a: 'varchar' } })
  // @ts-expect-error: a backup target is a URL string
  await mailbox.backup({ dir: '/tmp' })
  // @ts-expect-error: not an error code
  const wrong: ErrorCode = 'NOT_A_CODE'
  void wrong
}
