'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { execFile } = require('node:child_process')
const { promisify } = require('node:util')
const { sealmail, PASSWORD, FAST_KDF, withAccount, openMailbox, message, rejectsWithCode } = require('./helpers')
const { Mailbox } = sealmail

test('Mailbox.open refuses a wrong password and an unknown address with WRONG_PASSWORD', async (t) => {
  const { dataDir, address } = await withAccount(t)
  await rejectsWithCode(Mailbox.open(dataDir, address, 'not the password'), 'WRONG_PASSWORD')
  await rejectsWithCode(Mailbox.open(dataDir, 'nobody@example.com', PASSWORD), 'WRONG_PASSWORD')
  const mailbox = await Mailbox.open(dataDir, 'ALICE@example.com', PASSWORD)
  assert.equal(mailbox.address, 'alice@example.com')
  await mailbox.close()
})

test('Mailbox cannot be constructed from JS without a password', () => {
  assert.throws(() => new Mailbox())
})

test('append stores bytes exactly and fetchRaw returns them byte for byte', async (t) => {
  const { mailbox } = await openMailbox(t)
  // Every byte value, bare LF and CR, NUL and invalid UTF-8 inside the body.
  const body = Buffer.concat([Buffer.from([...Array(256).keys()]), Buffer.from('\n\r\n\xff\xfe', 'latin1'), crypto.randomBytes(4096)])
  const raw = Buffer.concat([Buffer.from('Subject: bytes\r\nContent-Type: application/octet-stream\r\n\r\n'), body])
  const appended = await mailbox.append('INBOX', raw)
  assert.equal(appended.uid, 1)
  assert.ok(appended.uidvalidity > 0)
  assert.ok(appended.modseq > 0)
  const fetched = await mailbox.fetchRaw(1)
  assert.ok(Buffer.isBuffer(fetched))
  assert.equal(Buffer.compare(fetched, raw), 0)
  const [doc] = await mailbox.find('messages', { uid: 1 }, { projection: { size: 1, subject: 1 } })
  assert.equal(doc.size, raw.length)
  assert.equal(doc.subject, 'bytes')
})

test('append takes flags and an internal date as a Date or milliseconds', async (t) => {
  const { mailbox } = await openMailbox(t)
  await mailbox.append('INBOX', message({ subject: 'one' }), { flags: ['\\Seen', '\\Flagged', '$Forwarded'], internalDate: new Date('2026-01-02T03:04:05.678Z') })
  await mailbox.append('INBOX', message({ subject: 'two' }), { internalDate: Date.UTC(2025, 5, 6, 7, 8, 9) })
  const docs = await mailbox.find('messages', {}, { projection: { subject: 1, seen: 1, flagged: 1, answered: 1, keywords: 1, internal_date: 1 }, sort: { uid: 1 } })
  assert.deepEqual(
    docs.map(({ subject, seen, flagged, answered, keywords, internal_date }) => ({ subject, seen, flagged, answered, keywords, internal_date })),
    [
      { subject: 'one', seen: true, flagged: true, answered: false, keywords: ['$Forwarded'], internal_date: '2026-01-02T03:04:05Z' },
      { subject: 'two', seen: false, flagged: false, answered: false, keywords: [], internal_date: '2025-06-06T07:08:09Z' },
    ],
  )
  await rejectsWithCode(mailbox.append('INBOX', message(), { flags: ['\\Bogus'] }), 'INVALID_ARGUMENT')
})

test('indexPending puts the waiting messages into the full-text index, in bounded amounts', async (t) => {
  const { mailbox } = await openMailbox(t)
  await mailbox.appendMany('INBOX', [1, 2, 3].map((i) => ({ raw: message({ subject: `wait ${i}` }) })))
  await mailbox.append('Archive', message({ subject: 'wait 4' }))
  assert.equal(await mailbox.indexPending(1), 1)
  assert.equal(await mailbox.indexPending(), 3)
  assert.equal(await mailbox.indexPending(), 0)
  await mailbox.close()
  await rejectsWithCode(mailbox.indexPending(), 'CLOSED')
})

test('appendMany stores a batch in one transaction, in order, byte for byte', async (t) => {
  const { mailbox } = await openMailbox(t)
  const raws = [1, 2, 3].map((i) => message({ subject: `batch ${i}`, body: `body ${i} ${'x'.repeat(i * 1000)}` }))
  const appended = await mailbox.appendMany('Archive', [
    { raw: raws[0], flags: ['\\Seen'] },
    { raw: raws[1], internalDate: new Date('2026-03-04T05:06:07Z') },
    { raw: raws[2], flags: ['$Label1'], internalDate: Date.UTC(2024, 0, 2) },
  ])
  assert.deepEqual(appended.map((a) => a.uid), [1, 2, 3])
  assert.equal(new Set(appended.map((a) => a.uidvalidity)).size, 1)
  for (const [index, { uid }] of appended.entries()) {
    assert.ok((await mailbox.fetchRaw(uid, 'Archive')).equals(raws[index]))
  }
  const docs = await mailbox.find('messages', { folder: 'Archive' }, { projection: { subject: 1, seen: 1, keywords: 1, internal_date: 1 }, sort: { uid: 1 } })
  assert.deepEqual(docs.map(({ subject, seen, keywords }) => ({ subject, seen, keywords })), [
    { subject: 'batch 1', seen: true, keywords: [] },
    { subject: 'batch 2', seen: false, keywords: [] },
    { subject: 'batch 3', seen: false, keywords: ['$Label1'] },
  ])
  assert.equal(docs[1].internal_date, '2026-03-04T05:06:07Z')
  assert.equal(docs[2].internal_date, '2024-01-02T00:00:00Z')
  assert.deepEqual(await mailbox.appendMany('INBOX', []), [])

  // All or nothing: a bad flag or a missing folder stores none of the batch.
  await rejectsWithCode(mailbox.appendMany('INBOX', [{ raw: message() }, { raw: message(), flags: ['\\Bogus'] }]), 'INVALID_ARGUMENT')
  await rejectsWithCode(mailbox.appendMany('No/Such', [{ raw: message() }]), 'NO_SUCH_FOLDER')
  assert.equal(await mailbox.count('messages', { folder: 'INBOX' }), 0)
  const next = await mailbox.append('Archive', message({ subject: 'after' }))
  assert.equal(next.uid, 4)
})

test('append and fetchRaw name missing folders and messages', async (t) => {
  const { mailbox } = await openMailbox(t)
  await rejectsWithCode(mailbox.append('No/Such', message()), 'NO_SUCH_FOLDER')
  await rejectsWithCode(mailbox.fetchRaw(42), 'NO_SUCH_MESSAGE')
  await rejectsWithCode(mailbox.fetchRaw(1, 'Nowhere'), 'NO_SUCH_FOLDER')
  await mailbox.append('Sent', message({ subject: 'sent one' }))
  assert.match((await mailbox.fetchRaw(1, 'Sent')).toString(), /Subject: sent one/)
  await rejectsWithCode(mailbox.fetchRaw(1), 'NO_SUCH_MESSAGE')
})

test('a quota is enforced with QUOTA_EXCEEDED and reported by quota()', async (t) => {
  const limit = 4_000_000
  const { mailbox, registry, address } = await openMailbox(t, { quota: limit })
  const before = await mailbox.quota()
  assert.equal(before.limitBytes, limit)
  assert.ok(before.usedBytes > 0 && before.usedBytes < limit, `used ${before.usedBytes}`)
  const tooBig = Buffer.concat([message(), Buffer.alloc(limit - before.usedBytes + 1, 'a')])
  await rejectsWithCode(mailbox.append('INBOX', tooBig), 'QUOTA_EXCEEDED')
  assert.equal(await mailbox.count('messages'), 0)
  await mailbox.append('INBOX', message())
  const after = await mailbox.quota()
  assert.ok(after.usedBytes >= before.usedBytes)
  assert.equal((await registry.lookup(address)).usedBytes, after.usedBytes)
})

test('an unlimited account reports no limit', async (t) => {
  const { mailbox } = await openMailbox(t)
  assert.equal((await mailbox.quota()).limitBytes, undefined)
})

test('a message over 64 MiB is refused with MESSAGE_TOO_LARGE', async (t) => {
  const { mailbox } = await openMailbox(t)
  const huge = Buffer.alloc(64 * 1024 * 1024 + 1, 'x')
  await rejectsWithCode(mailbox.append('INBOX', huge), 'MESSAGE_TOO_LARGE')
  assert.equal(await mailbox.count('messages'), 0)
})

test('a 30 MB message round-trips and is found by size', async (t) => {
  const { mailbox } = await openMailbox(t)
  // base64 lines, as a large attachment arrives.
  const payload = crypto.randomBytes(22 * 1024 * 1024).toString('base64').replace(/.{76}/g, '$&\r\n')
  const raw = Buffer.from(
    'From: big@example.org\r\nSubject: thirty megabytes\r\nMIME-Version: 1.0\r\n' +
      'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n' + payload + '\r\n',
  )
  assert.ok(raw.length > 30_000_000, `only ${raw.length} bytes`)
  const { uid } = await mailbox.append('INBOX', raw)
  const fetched = await mailbox.fetchRaw(uid)
  assert.equal(fetched.length, raw.length)
  assert.ok(fetched.equals(raw))
  const found = await mailbox.find('messages', { size: { $gt: 30_000_000 } }, { projection: { uid: 1, subject: 1 } })
  assert.deepEqual(found, [{ id: 1, uid, subject: 'thirty megabytes' }])
})

test('folders() lists the default folders and createFolder adds more', async (t) => {
  const { mailbox } = await openMailbox(t)
  const folders = await mailbox.folders()
  assert.deepEqual(folders.map((f) => f.path), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash'])
  assert.equal(folders.find((f) => f.path === 'Sent').specialUse, '\\Sent')
  assert.equal(folders.find((f) => f.path === 'INBOX').specialUse, undefined)
  const created = await mailbox.createFolder('Projects/2026', '\\Flagged')
  assert.equal(created.path, 'Projects/2026')
  assert.equal(created.specialUse, '\\Flagged')
  assert.equal(created.messages, 0)
  await mailbox.append('Projects/2026', message())
  await mailbox.append('Projects/2026', message(), { flags: ['\\Seen'] })
  const after = (await mailbox.folders()).find((f) => f.path === 'Projects/2026')
  assert.equal(after.messages, 2)
  assert.equal(after.unseen, 1)
  assert.equal(after.uidnext, 3)
  assert.ok(after.size > 0)
  assert.ok((await mailbox.folders()).some((f) => f.path === 'Projects'))
  await rejectsWithCode(mailbox.createFolder('Projects/2026'), 'FOLDER_EXISTS')
  await rejectsWithCode(mailbox.createFolder('bad*name'), 'INVALID_FOLDER_NAME')
})

test('find, findOne, count and distinct over messages', async (t) => {
  const { mailbox } = await openMailbox(t)
  for (let i = 1; i <= 12; i++) {
    const from = i % 3 === 0 ? 'Carol <carol@example.net>' : 'Bob <bob@example.org>'
    await mailbox.append(i % 4 === 0 ? 'Archive' : 'INBOX', message({ from, subject: `note ${i}` }), { flags: i % 2 ? ['\\Seen'] : [] })
  }
  assert.equal(await mailbox.count('messages'), 12)
  assert.equal(await mailbox.count('messages', { folder: 'INBOX' }), 9)
  assert.equal(await mailbox.count('messages', { folder: 'INBOX', seen: false }), 3)
  const page = await mailbox.find('messages', { folder: 'INBOX' }, { projection: { subject: 1 }, sort: { uid: -1 }, skip: 2, limit: 3 })
  assert.deepEqual(page.map((m) => m.subject), ['note 9', 'note 7', 'note 6'])
  const carol = await mailbox.find('messages', { 'from.address': 'carol@example.net' }, { projection: { subject: 1 } })
  assert.deepEqual(carol.map((m) => m.subject).sort(), ['note 12', 'note 3', 'note 6', 'note 9'])
  const or = await mailbox.find('messages', { $or: [{ subject: 'note 1' }, { subject: { $regex: '^NOTE 1[01]$', $options: 'i' } }] }, { projection: { subject: 1 } })
  assert.deepEqual(or.map((m) => m.subject), ['note 1', 'note 10', 'note 11'])
  const one = await mailbox.findOne('messages', { seen: false }, { sort: { id: -1 } })
  assert.equal(one.subject, 'note 12')
  assert.equal(one.folder, 'Archive')
  assert.equal(await mailbox.findOne('messages', { subject: 'missing' }), null)
  assert.deepEqual((await mailbox.distinct('messages', 'folder')).sort(), ['Archive', 'INBOX'])
  assert.deepEqual(await mailbox.distinct('messages', 'folder', { seen: true }), ['INBOX'])
  const folderDocs = await mailbox.find('folders', { path: 'INBOX' }, { projection: { path: 1, uidnext: 1 } })
  assert.equal(folderDocs[0].uidnext, 10)
})

test('find answers all-ASCII and non-ASCII text alike, JSON escapes included', async (t) => {
  const { mailbox } = await openMailbox(t)
  // RFC 2047 words: "Grüße 😀" and "Zoë"; Latin-1 range and astral characters, which must not
  // pass for ASCII on the way to JS.
  await mailbox.append('INBOX', message({ from: '=?UTF-8?Q?Zo=C3=AB?= <zoe@example.org>', subject: '=?UTF-8?B?R3LDvMOfZSDwn5iA?=' }))
  await mailbox.append('INBOX', message({ from: 'Ann <ann@example.org>', subject: 'quote " and backslash \\ end' }))
  const projection = { subject: 1, from: 1, id: 0 }
  const both = await mailbox.find('messages', {}, { projection, sort: { uid: 1 } })
  assert.deepEqual(both.map((m) => m.subject), ['Grüße 😀', 'quote " and backslash \\ end'])
  assert.deepEqual(both.map((m) => m.from), [[{ name: 'Zoë', address: 'zoe@example.org' }], [{ name: 'Ann', address: 'ann@example.org' }]])
  // Each alone: an answer that is all ASCII, and one that is not.
  assert.deepEqual(await mailbox.find('messages', { uid: 2 }, { projection }), [both[1]])
  assert.deepEqual(await mailbox.findOne('messages', { uid: 1 }, { projection }), both[0])
})

test('find answers larger than one piece of JSON text come back whole and in order', async (t) => {
  const { mailbox } = await openMailbox(t)
  // About 200 KB of documents: the binding hands them to JSON.parse in several pieces.
  const subject = (i) => `piece ${i} ${'x'.repeat(1000)}`
  await mailbox.appendMany('INBOX', Array.from({ length: 200 }, (_, i) => ({ raw: message({ subject: subject(i) }) })))
  const docs = await mailbox.find('messages', { folder: 'INBOX' }, { projection: { uid: 1, subject: 1 }, sort: { uid: 1 } })
  assert.equal(docs.length, 200)
  assert.ok(Array.isArray(docs))
  docs.forEach((doc, i) => assert.deepEqual({ uid: doc.uid, subject: doc.subject }, { uid: i + 1, subject: subject(i) }))
  const tail = await mailbox.find('messages', {}, { projection: { uid: 1 }, sort: { uid: -1 }, skip: 190 })
  assert.deepEqual(tail.map((doc) => doc.uid), [10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
})

test('query errors carry their code', async (t) => {
  const { mailbox } = await openMailbox(t)
  await rejectsWithCode(mailbox.find('messages', { no_such_field: 1 }), 'UNKNOWN_FIELD')
  await rejectsWithCode(mailbox.find('no_such_collection'), 'UNKNOWN_COLLECTION')
  await rejectsWithCode(mailbox.find('messages', { size: { $near: 1 } }), 'UNKNOWN_OPERATOR')
  await rejectsWithCode(mailbox.find('messages', {}, { limit: -1 }), 'INVALID_QUERY')
  await rejectsWithCode(mailbox.find('messages', {}, { hint: 'uid' }), 'INVALID_QUERY')
  // Options may not smuggle in another operation or collection.
  await rejectsWithCode(mailbox.find('messages', {}, { op: 'delete_many' }), 'INVALID_QUERY')
  await rejectsWithCode(mailbox.find('messages', {}, { collection: 'folders' }), 'INVALID_QUERY')
  await rejectsWithCode(mailbox.updateMany('messages', {}, { $set: { seen: true } }), 'READ_ONLY_COLLECTION')
  await rejectsWithCode(mailbox.deleteMany('messages', {}), 'READ_ONLY_COLLECTION')
  let deep = { uid: 1 }
  for (let i = 0; i < 40; i++) deep = { $and: [deep] }
  await rejectsWithCode(mailbox.find('messages', deep), 'QUERY_TOO_COMPLEX')
})

test('application collections: define, insert, update, delete', async (t) => {
  const { mailbox } = await openMailbox(t)
  const defined = await mailbox.defineCollection('contacts', {
    fields: { email: 'text', name: 'text', visits: 'integer', tags: 'json' },
    indexes: [{ fields: ['email'], unique: true }],
  })
  assert.equal(defined.created, true)
  assert.equal(defined.version, 1)
  const again = await mailbox.defineCollection('contacts', {
    fields: { email: 'text', name: 'text', visits: 'integer', tags: 'json', phone: 'text' },
    indexes: [{ fields: ['email'], unique: true }],
  })
  assert.deepEqual({ created: again.created, addedFields: again.addedFields, version: again.version }, { created: false, addedFields: ['phone'], version: 2 })
  await rejectsWithCode(mailbox.defineCollection('contacts', { fields: { email: 'integer' }, indexes: [{ fields: ['email'], unique: true }] }), 'DESTRUCTIVE_SCHEMA_CHANGE')

  const id = await mailbox.insertOne('contacts', { email: 'bob@example.org', name: 'Bob', visits: 1, tags: ['work'] })
  assert.match(id, /^[0-9a-f]{24}$/)
  const ids = await mailbox.insertMany('contacts', [
    { email: 'carol@example.net', name: 'Carol', visits: 5 },
    { email: 'dave@example.com', name: 'Dave', visits: 0 },
  ])
  assert.equal(ids.length, 2)
  await rejectsWithCode(mailbox.insertOne('contacts', { email: 'bob@example.org' }), 'DUPLICATE_KEY')
  await rejectsWithCode(mailbox.insertOne('contacts', { email: 'x@example.org', age: 3 }), 'UNKNOWN_FIELD')

  const bumped = await mailbox.updateMany('contacts', { visits: { $lt: 5 } }, { $inc: { visits: 10 } })
  assert.deepEqual({ matched: bumped.matched, modified: bumped.modified }, { matched: 2, modified: 2 })
  assert.equal(bumped.upsertedId, undefined)
  const one = await mailbox.updateOne('contacts', { email: 'bob@example.org' }, { $push: { tags: 'friend' } })
  assert.equal(one.modified, 1)
  assert.deepEqual((await mailbox.findOne('contacts', { _id: id })).tags, ['work', 'friend'])
  const upsert = await mailbox.updateMany('contacts', { email: 'erin@example.com' }, { $set: { name: 'Erin' } }, { upsert: true })
  assert.equal(upsert.matched, 0)
  assert.match(upsert.upsertedId, /^[0-9a-f]{24}$/)
  assert.deepEqual(
    (await mailbox.find('contacts', {}, { projection: { name: 1, visits: 1, _id: 0 }, sort: { name: 1 } })),
    [{ name: 'Bob', visits: 11 }, { name: 'Carol', visits: 5 }, { name: 'Dave', visits: 10 }, { name: 'Erin' }],
  )
  assert.equal(await mailbox.deleteOne('contacts', { visits: { $gte: 10 } }), 1)
  assert.equal(await mailbox.deleteMany('contacts', { name: { $in: ['Bob', 'Carol', 'Dave', 'Erin'] } }), 3)
  assert.equal(await mailbox.count('contacts'), 0)
})

test('a closed handle rejects every call with CLOSED and closing twice is harmless', async (t) => {
  const { dataDir, address } = await withAccount(t)
  const mailbox = await Mailbox.open(dataDir, address, PASSWORD)
  await mailbox.append('INBOX', message())
  await mailbox.close()
  await mailbox.close()
  const calls = [
    () => mailbox.append('INBOX', message()),
    () => mailbox.fetchRaw(1),
    () => mailbox.folders(),
    () => mailbox.createFolder('X'),
    () => mailbox.quota(),
    () => mailbox.find('messages'),
    () => mailbox.findOne('messages'),
    () => mailbox.count('messages'),
    () => mailbox.distinct('messages', 'uid'),
    () => mailbox.insertOne('c', {}),
    () => mailbox.insertMany('c', [{}]),
    () => mailbox.updateOne('c', {}, { $set: { a: 1 } }),
    () => mailbox.updateMany('c', {}, { $set: { a: 1 } }),
    () => mailbox.deleteOne('c', {}),
    () => mailbox.deleteMany('c', {}),
    () => mailbox.defineCollection('c', { fields: { a: 'text' } }),
  ]
  for (const call of calls) await rejectsWithCode(call(), 'CLOSED')
  assert.equal(mailbox.address, address)
  // The data is intact for the next login.
  const reopened = await Mailbox.open(dataDir, address, PASSWORD)
  assert.equal(await reopened.count('messages'), 1)
  await reopened.close()
})

test('close() waits for calls already made on the handle', async (t) => {
  const { dataDir, address } = await withAccount(t)
  const mailbox = await Mailbox.open(dataDir, address, PASSWORD)
  const appends = Array.from({ length: 5 }, (_, i) => mailbox.append('INBOX', message({ subject: `s${i}` })))
  const closing = mailbox.close()
  const results = await Promise.allSettled(appends)
  await closing
  // Each append either finished before close or was refused with CLOSED; none half-done.
  const done = results.filter((r) => r.status === 'fulfilled').length
  for (const r of results) if (r.status === 'rejected') assert.equal(r.reason.code, 'CLOSED')
  const reopened = await Mailbox.open(dataDir, address, PASSWORD)
  assert.equal(await reopened.count('messages'), done)
  await reopened.close()
})

test('concurrent calls on one handle all succeed with distinct UIDs', async (t) => {
  const { mailbox } = await openMailbox(t)
  const appends = await Promise.all(Array.from({ length: 40 }, (_, i) => mailbox.append('INBOX', message({ subject: `c${i}` }))))
  assert.deepEqual(appends.map((a) => a.uid).sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i + 1))
  const mixed = await Promise.all([
    mailbox.count('messages'),
    mailbox.find('messages', { subject: 'c7' }, { projection: { subject: 1 } }),
    mailbox.folders(),
    mailbox.fetchRaw(appends[0].uid),
    mailbox.quota(),
  ])
  assert.equal(mixed[0], 40)
  assert.equal(mixed[1][0].subject, 'c7')
  assert.equal(mixed[2].find((f) => f.path === 'INBOX').messages, 40)
  assert.ok(Buffer.isBuffer(mixed[3]))
})

test('concurrent calls on several mailboxes and two handles on one mailbox', async (t) => {
  const { dataDir, registry } = await withAccount(t)
  const addresses = ['a@example.com', 'b@example.com', 'c@example.com']
  await Promise.all(addresses.map((address) => registry.addAccount(address, { password: PASSWORD, kdf: FAST_KDF })))
  const mailboxes = await Promise.all(addresses.map((address) => Mailbox.open(dataDir, address, PASSWORD)))
  t.after(() => Promise.all(mailboxes.map((m) => m.close())))
  await Promise.all(mailboxes.flatMap((mailbox, n) => Array.from({ length: 10 * (n + 1) }, () => mailbox.append('INBOX', message({ subject: addresses[n] })))))
  const counts = await Promise.all(mailboxes.map((mailbox) => mailbox.count('messages')))
  assert.deepEqual(counts, [10, 20, 30])
  // Each mailbox holds only its own mail.
  for (const [n, mailbox] of mailboxes.entries()) {
    assert.deepEqual(await mailbox.distinct('messages', 'subject'), [addresses[n]])
  }
  const second = await Mailbox.open(dataDir, 'a@example.com', PASSWORD)
  t.after(() => second.close())
  await Promise.all([second.append('INBOX', message()), mailboxes[0].append('INBOX', message())])
  assert.equal(await second.count('messages'), 12)
  assert.equal(await mailboxes[0].count('messages'), 12)
})

/** The mailbox file's write-ahead log; SQLite removes it when the last connection closes. */
async function walPath(registry, address) {
  const { mailboxId } = await registry.lookup(address)
  return path.join('mailboxes', mailboxId.slice(0, 2), `${mailboxId}.sqlite-wal`)
}

test('close() releases the mailbox file', async (t) => {
  const { dataDir, registry, address } = await withAccount(t)
  const wal = path.join(dataDir, await walPath(registry, address))
  const mailbox = await Mailbox.open(dataDir, address, PASSWORD)
  await mailbox.append('INBOX', message())
  assert.ok(fs.existsSync(wal), 'an open mailbox keeps its WAL')
  await mailbox.close()
  assert.ok(!fs.existsSync(wal), 'the connection was not closed')
})

test('a handle dropped without close() is released by the garbage collector', async (t) => {
  const { dataDir, registry, address } = await withAccount(t)
  const wal = path.join(dataDir, await walPath(registry, address))
  const script = `
    const { Mailbox } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const fs = require('node:fs')
    ;(async () => {
      let mailbox = await Mailbox.open(${JSON.stringify(dataDir)}, ${JSON.stringify(address)}, ${JSON.stringify(PASSWORD)})
      await mailbox.append('INBOX', Buffer.from('Subject: gc\\r\\n\\r\\nbody\\r\\n'))
      const before = fs.existsSync(${JSON.stringify(wal)})
      mailbox = null
      for (let i = 0; i < 400 && fs.existsSync(${JSON.stringify(wal)}); i++) {
        global.gc()
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      console.log(JSON.stringify({ before, after: fs.existsSync(${JSON.stringify(wal)}) }))
    })()
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '-e', script])
  assert.deepEqual(JSON.parse(stdout), { before: true, after: false })
  const reopened = await Mailbox.open(dataDir, address, PASSWORD)
  assert.equal(await reopened.count('messages', { subject: 'gc' }), 1)
  await reopened.close()
})
