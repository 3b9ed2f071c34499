'use strict'
// Shared setup for the node:test suites: a throw-away data directory per test and accounts
// with a tiny Argon2id cost (the `kdf` option exists for exactly this; production accounts
// keep the secure default).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const assert = require('node:assert/strict')
const sealmail = require('..')

const FAST_KDF = { memoryKib: 8, iterations: 1, parallelism: 1 }
const PASSWORD = 'correct horse battery staple'

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealmail-node-test-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A data directory with one account; resolves `{ dataDir, registry, address, password }`. */
async function withAccount(t, { address = 'alice@example.com', quota } = {}) {
  const dataDir = tempDir(t)
  const registry = await sealmail.Registry.open(dataDir)
  await registry.addAccount(address, { password: PASSWORD, kdf: FAST_KDF, quota })
  return { dataDir, registry, address, password: PASSWORD }
}

/** An open mailbox, closed after the test. */
async function openMailbox(t, options) {
  const account = await withAccount(t, options)
  const mailbox = await sealmail.Mailbox.open(account.dataDir, account.address, account.password)
  t.after(() => mailbox.close())
  return { ...account, mailbox }
}

/** A small RFC 5322 message. */
function message({ from = 'Bob <bob@example.org>', to = 'alice@example.com', subject = 'hello', body = 'Hi Alice' } = {}) {
  return Buffer.from(
    `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Sat, 28 Nov 2026 20:00:00 +0000\r\n` +
      `Message-ID: <${Math.random().toString(16).slice(2)}@example.org>\r\n\r\n${body}\r\n`,
  )
}

/** Assert that `promise` rejects with an `Error` whose `code` is `code`. */
async function rejectsWithCode(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof Error, `expected an Error, got ${error}`)
    assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`)
    assert.ok(error.message.length > 0)
    return true
  })
}

module.exports = { sealmail, FAST_KDF, PASSWORD, tempDir, withAccount, openMailbox, message, rejectsWithCode }
