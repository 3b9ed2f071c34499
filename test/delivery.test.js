'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const { execFile } = require('node:child_process')
const { promisify } = require('node:util')
const path = require('node:path')
const fs = require('node:fs')
const nodemailer = require('nodemailer')
const { sealmail, PASSWORD, FAST_KDF, withAccount, message, rejectsWithCode } = require('./helpers')
const { createMx } = require('../examples/node/mx')
const { Mailbox, deliver } = sealmail

test('deliver() seals mail for an offline owner; it lands in INBOX at the next login', async (t) => {
  const { dataDir, address } = await withAccount(t)
  const raw = message({ subject: 'while you were out' })
  const id = await deliver(dataDir, address, raw)
  assert.equal(typeof id, 'string')
  assert.ok(id.length > 0)
  // Sealed: the plaintext is in no file of the data directory.
  const files = fs.readdirSync(dataDir, { recursive: true }).map((name) => path.join(dataDir, String(name)))
  const queued = files.filter((file) => fs.statSync(file).isFile() && file.includes(`${path.sep}queue${path.sep}`))
  assert.ok(queued.length >= 1, 'nothing queued')
  for (const file of files.filter((f) => fs.statSync(f).isFile())) {
    assert.ok(!fs.readFileSync(file).includes('while you were out'), `plaintext in ${file}`)
  }
  const mailbox = await Mailbox.open(dataDir, address, PASSWORD)
  t.after(() => mailbox.close())
  const found = await mailbox.find('messages', { subject: 'while you were out' }, { projection: { folder: 1, uid: 1 } })
  assert.equal(found.length, 1)
  assert.equal(found[0].folder, 'INBOX')
  assert.ok((await mailbox.fetchRaw(found[0].uid)).equals(raw))
})

test('deliver() to an unknown address rejects with NO_SUCH_ACCOUNT', async (t) => {
  const { dataDir } = await withAccount(t)
  await rejectsWithCode(deliver(dataDir, 'nobody@example.com', message()), 'NO_SUCH_ACCOUNT')
})

test('the example MX takes mail from nodemailer and the owner finds it after login', async (t) => {
  const { dataDir, address, registry } = await withAccount(t)
  await registry.addAccount('bob@example.com', { password: PASSWORD, kdf: FAST_KDF })
  const server = await createMx({ dataDir, hostname: 'mx.test' })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise((resolve) => server.close(resolve)))
  const { port } = server.server.address()

  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true })
  const info = await transport.sendMail({
    from: 'Sender <sender@example.org>',
    to: [address, 'bob@example.com'],
    subject: 'Sealed on arrival',
    text: 'This message was encrypted for you before it touched the disk.',
    attachments: [{ filename: 'data.bin', content: Buffer.from([0, 1, 2, 254, 255]) }],
  })
  assert.deepEqual(info.accepted.sort(), [address, 'bob@example.com'])

  // An unknown recipient is refused at RCPT TO.
  await assert.rejects(
    transport.sendMail({ from: 'sender@example.org', to: 'nobody@example.com', subject: 'x', text: 'x' }),
    (error) => error.responseCode === 550,
  )

  for (const owner of [address, 'bob@example.com']) {
    const mailbox = await Mailbox.open(dataDir, owner, PASSWORD)
    try {
      const found = await mailbox.find(
        'messages',
        { subject: 'Sealed on arrival', 'from.address': 'sender@example.org' },
        { projection: { uid: 1, folder: 1, has_attachment: 1 } },
      )
      assert.equal(found.length, 1, `${owner} got ${found.length}`)
      assert.equal(found[0].folder, 'INBOX')
      assert.equal(found[0].has_attachment, true)
      const raw = (await mailbox.fetchRaw(found[0].uid)).toString()
      assert.match(raw, /^Return-Path: <sender@example\.org>\r\nReceived: from /)
      assert.match(raw, /encrypted for you/)
    } finally {
      await mailbox.close()
    }
  }
})

test('the query example runs and prints its results', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(__dirname, '..', 'examples', 'node', 'query.js')])
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line))
  const result = (step) => lines.find((line) => line.step === step).result
  assert.equal(result('unseen in INBOX'), 2)
  assert.equal(result('latest 10 in INBOX').length, 3)
  assert.deepEqual(result('from example.org, subject starting with "Re:"').map((m) => m.subject), ['Re: Lunch on Friday?'])
  assert.deepEqual(result('senders').sort(), ['bob@example.org', 'carol@example.net'])
  assert.deepEqual(result('notes'), [{ uid: 1, text: 'call back', tags: ['todo', 'phone'] }])
})
