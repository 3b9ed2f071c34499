'use strict'
const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')
const { sealmail, FAST_KDF, PASSWORD, tempDir, withAccount, rejectsWithCode } = require('./helpers')
const { Registry, Mailbox } = sealmail

test('Registry.open creates the data directory and its registry', async (t) => {
  const dataDir = path.join(tempDir(t), 'nested', 'data')
  const registry = await Registry.open(dataDir)
  assert.ok(fs.existsSync(path.join(dataDir, 'registry.sqlite')))
  assert.deepEqual(await registry.listAccounts(), [])
})

test('addAccount without a password generates one that opens the mailbox', async (t) => {
  const registry = await Registry.open(tempDir(t))
  const account = await registry.addAccount('Bob@Example.ORG', { kdf: FAST_KDF })
  assert.equal(account.address, 'bob@example.org')
  assert.match(account.mailboxId, /^[0-9a-f]{24}$/)
  assert.equal(typeof account.password, 'string')
  assert.ok(account.password.length >= 16)
  assert.equal(account.recoveryCode, undefined)
  assert.equal(await registry.verify('BOB@example.org', account.password), true)
})

test('addAccount with a password returns no password, and a recovery code on request', async (t) => {
  const registry = await Registry.open(tempDir(t))
  const account = await registry.addAccount('carol@example.com', { password: PASSWORD, recoveryCode: true, kdf: FAST_KDF })
  assert.equal(account.password, undefined)
  assert.equal(typeof account.recoveryCode, 'string')
  const info = await registry.lookup('carol@example.com')
  assert.equal(info.hasRecoveryCode, true)
})

test('addAccount with the default KDF uses the secure cost and still logs in', async (t) => {
  const registry = await Registry.open(tempDir(t))
  await registry.addAccount('slow@example.com', { password: PASSWORD })
  const started = process.hrtime.bigint()
  assert.equal(await registry.verify('slow@example.com', PASSWORD), true)
  const millis = Number(process.hrtime.bigint() - started) / 1e6
  // 19 MiB x 2 passes of Argon2id cannot finish in a millisecond; the test KDF does.
  assert.ok(millis > 5, `a default-cost login took only ${millis} ms`)
})

test('addAccount refuses a duplicate address and an invalid one', async (t) => {
  const { registry } = await withAccount(t)
  await rejectsWithCode(registry.addAccount('ALICE@example.com', { password: PASSWORD, kdf: FAST_KDF }), 'ADDRESS_EXISTS')
  await rejectsWithCode(registry.addAccount('not an address', { password: PASSWORD, kdf: FAST_KDF }), 'INVALID_ADDRESS')
  await rejectsWithCode(registry.addAccount('x@example.com', { password: PASSWORD, kdf: { memoryKib: 1, iterations: 0, parallelism: 0 } }), 'INVALID_ARGUMENT')
  await rejectsWithCode(registry.addAccount('x@example.com', { password: PASSWORD, kdf: FAST_KDF, quota: -1 }), 'INVALID_ARGUMENT')
})

test('verify answers false for a wrong password and for an unknown address', async (t) => {
  const { registry, address } = await withAccount(t)
  assert.equal(await registry.verify(address, PASSWORD), true)
  assert.equal(await registry.verify(address, 'wrong password'), false)
  assert.equal(await registry.verify('nobody@example.com', PASSWORD), false)
})

test('changePassword re-keys the login: the old password stops working', async (t) => {
  const { registry, dataDir, address } = await withAccount(t)
  await rejectsWithCode(registry.changePassword(address, 'not the password', 'new password 123'), 'WRONG_PASSWORD')
  await registry.changePassword(address, PASSWORD, 'new password 123')
  assert.equal(await registry.verify(address, PASSWORD), false)
  assert.equal(await registry.verify(address, 'new password 123'), true)
  const mailbox = await Mailbox.open(dataDir, address, 'new password 123')
  await mailbox.close()
  await rejectsWithCode(Mailbox.open(dataDir, address, PASSWORD), 'WRONG_PASSWORD')
})

test('removeAccount deletes the account and its mailbox', async (t) => {
  const { registry, dataDir, address } = await withAccount(t)
  const { mailboxId } = await registry.lookup(address)
  await registry.removeAccount(address)
  assert.equal(await registry.lookup(address), null)
  const files = fs.readdirSync(path.join(dataDir, 'mailboxes'), { recursive: true })
  assert.ok(!files.some((name) => String(name).includes(mailboxId)), `left behind: ${files}`)
  await rejectsWithCode(Mailbox.open(dataDir, address, PASSWORD), 'WRONG_PASSWORD')
  await rejectsWithCode(registry.removeAccount(address), 'NO_SUCH_ACCOUNT')
})

test('lookup and listAccounts show public account facts only', async (t) => {
  const { registry } = await withAccount(t, { quota: 1_000_000 })
  await registry.addAccount('zed@example.com', { password: PASSWORD, kdf: FAST_KDF })
  const accounts = await registry.listAccounts()
  assert.deepEqual(accounts.map((a) => a.address), ['alice@example.com', 'zed@example.com'])
  assert.equal(accounts[0].quota, 1_000_000)
  assert.equal(accounts[1].quota, undefined)
  assert.match(accounts[0].createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  for (const account of accounts) {
    assert.deepEqual(Object.keys(account).sort(), ['address', 'createdAt', 'hasRecoveryCode', 'mailboxId', 'usedBytes', ...(account.quota === undefined ? [] : ['quota'])].sort())
  }
  assert.equal(await registry.lookup('nobody@example.com'), null)
})

test('two Registry handles on one directory see each other', async (t) => {
  const { dataDir } = await withAccount(t)
  const other = await Registry.open(dataDir)
  await other.addAccount('second@example.com', { password: PASSWORD, kdf: FAST_KDF })
  const first = await Registry.open(dataDir)
  assert.equal((await first.listAccounts()).length, 2)
})

test('Mailbox.open and deliver on a directory without a registry say so', async (t) => {
  const dataDir = path.join(tempDir(t), 'missing')
  await rejectsWithCode(Mailbox.open(dataDir, 'alice@example.com', PASSWORD), 'REGISTRY_MISSING')
  await rejectsWithCode(sealmail.deliver(dataDir, 'alice@example.com', Buffer.from('x')), 'REGISTRY_MISSING')
})
