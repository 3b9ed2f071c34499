'use strict'
// Mailbox.backup and Registry.removeAccount({ purgeBackups }) against a file:// target.
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { sealmail, PASSWORD, openMailbox, tempDir, message, rejectsWithCode } = require('./helpers')
const { Mailbox } = sealmail

const MARKER = 'nodeBACKUPmarker7q'

test('backup stores an encrypted, hashed snapshot, skips an unchanged mailbox, stores a change', async (t) => {
  const { mailbox, registry, address } = await openMailbox(t)
  const { mailboxId } = await registry.lookup(address)
  const target = tempDir(t)
  await mailbox.append('INBOX', message({ subject: MARKER, body: MARKER }))

  const first = await mailbox.backup(`file://${target}`)
  assert.equal(first.skipped, false)
  assert.match(first.version, /^\d{8}T\d{6}\.\d{3}Z$/)
  assert.equal(first.objectKey, path.join(target, mailboxId, `${first.version}.sqlite`))
  const stored = fs.readFileSync(first.objectKey)
  assert.equal(first.size, stored.length)
  assert.equal(first.hash, crypto.createHash('sha256').update(stored).digest('hex'))
  assert.ok(!stored.includes(MARKER), 'the snapshot is encrypted')
  assert.ok(!stored.subarray(0, 16).equals(Buffer.from('SQLite format 3\0')), 'no plaintext header')

  const again = await mailbox.backup(`file://${target}`)
  assert.equal(again.skipped, true)
  assert.equal(again.version, first.version)
  assert.equal(again.hash, first.hash)

  await mailbox.append('INBOX', message({ subject: 'second' }))
  const third = await mailbox.backup(`file://${target}`, { keepDaily: 1, keepMonthly: 0 })
  assert.equal(third.skipped, false)
  assert.notEqual(third.version, first.version)
  // Retention kept the newest version of today only.
  assert.deepEqual(third.pruned, [first.version])
  const left = fs.readdirSync(path.join(target, mailboxId)).sort()
  assert.deepEqual(left, [`${third.version}.json`, `${third.version}.sqlite`])
})

test('backup rejects s3 targets in this build, other bad targets, and a closed handle', async (t) => {
  const { mailbox } = await openMailbox(t)
  await rejectsWithCode(mailbox.backup('s3://bucket/prefix'), 'UNSUPPORTED_TARGET')
  await rejectsWithCode(mailbox.backup('relative/dir'), 'INVALID_ARGUMENT')
  await mailbox.close()
  await rejectsWithCode(mailbox.backup(`file://${tempDir(t)}`), 'CLOSED')
})

test('concurrent backups of two mailboxes both land', async (t) => {
  const target = tempDir(t)
  const one = await openMailbox(t, { address: 'one@example.com' })
  const two = await openMailbox(t, { address: 'two@example.com' })
  await one.mailbox.append('INBOX', message({ subject: 'one' }))
  await two.mailbox.append('INBOX', message({ subject: 'two' }))
  const [a, b] = await Promise.all([one.mailbox.backup(`file://${target}`), two.mailbox.backup(`file://${target}`)])
  assert.ok(fs.existsSync(a.objectKey) && fs.existsSync(b.objectKey))
  assert.notEqual(path.dirname(a.objectKey), path.dirname(b.objectKey))
})

test('removeAccount with purgeBackups deletes the backups and every mailbox file', async (t) => {
  const { mailbox, registry, address, dataDir } = await openMailbox(t)
  const { mailboxId } = await registry.lookup(address)
  const target = tempDir(t)
  await mailbox.append('INBOX', message())
  const stored = await mailbox.backup(`file://${target}`)
  await mailbox.close()
  // The backup left its lock file beside the mailbox.
  const mailboxFiles = () =>
    fs.readdirSync(path.join(dataDir, 'mailboxes'), { recursive: true }).map(String).filter((name) => name.includes(mailboxId))
  assert.ok(mailboxFiles().some((name) => name.endsWith('.backup-lock')), `${mailboxFiles()}`)

  // An unsupported target is refused before anything is deleted.
  await rejectsWithCode(registry.removeAccount(address, { purgeBackups: 's3://bucket' }), 'UNSUPPORTED_TARGET')
  assert.ok(fs.existsSync(stored.objectKey))
  assert.notEqual(await registry.lookup(address), null)

  await registry.removeAccount(address, { purgeBackups: `file://${target}` })
  assert.equal(fs.existsSync(stored.objectKey), false)
  assert.equal(fs.existsSync(path.join(target, mailboxId)), false)
  assert.deepEqual(mailboxFiles(), [])
  await rejectsWithCode(Mailbox.open(dataDir, address, PASSWORD), 'WRONG_PASSWORD')
})
