'use strict'
// Mailbox.backup and Registry.removeAccount({ purgeBackups }) against a file:// target and
// against a real S3-compatible server (moto, installed by .ci/run) on 127.0.0.1.
const test = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { spawn } = require('node:child_process')
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

test('backup rejects bad targets and a closed handle', async (t) => {
  const { mailbox } = await openMailbox(t)
  await rejectsWithCode(mailbox.backup('relative/dir'), 'INVALID_ARGUMENT')
  await rejectsWithCode(mailbox.backup('ftp://example.org/backups'), 'INVALID_ARGUMENT')
  await rejectsWithCode(mailbox.backup('s3:///no-bucket'), 'INVALID_ARGUMENT')
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

  // An unusable target is refused before anything is deleted.
  await rejectsWithCode(registry.removeAccount(address, { purgeBackups: 'relative/dir' }), 'INVALID_ARGUMENT')
  assert.ok(fs.existsSync(stored.objectKey))
  assert.notEqual(await registry.lookup(address), null)

  await registry.removeAccount(address, { purgeBackups: `file://${target}` })
  assert.equal(fs.existsSync(stored.objectKey), false)
  assert.equal(fs.existsSync(path.join(target, mailboxId)), false)
  assert.deepEqual(mailboxFiles(), [])
  await rejectsWithCode(Mailbox.open(dataDir, address, PASSWORD), 'WRONG_PASSWORD')
})

/**
 * One HTTP request to moto; resolves `{ status, body }`. moto checks no signatures but answers
 * 403 to an anonymous GET of an object: the header names the test's key with a dummy signature.
 */
function httpRequest(port, method, urlPath) {
  const authorization = 'AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00'
  return new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, method, path: urlPath, timeout: 30_000, headers: { authorization } }
    const request = http.request(options, (response) => {
      const chunks = []
      response.on('data', (chunk) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks) }))
    })
    request.on('timeout', () => request.destroy(new Error(`${method} ${urlPath} timed out`)))
    request.on('error', reject)
    request.end()
  })
}

/**
 * `moto_server` on a port of the kernel's choosing (read from its startup line, so nothing can
 * take the port between choosing and binding it), with a bucket, stopped after the test; the
 * AWS environment variables point at it for the test's duration (the addon reads them at each
 * call).
 */
async function startMoto(t, bucket) {
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  t.after(async () => {
    child.kill()
    await exited
  })
  const port = await new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`moto_server did not announce its port within 60 s: ${seen}`)), 60_000)
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(new Error(`moto_server must be installed (pip install 'moto[server]>=5.2.5'): ${error}`))
    })
    // Werkzeug logs its address, then a line per request: keep reading so it never blocks.
    child.stderr.on('data', (chunk) => {
      if (seen === null) return
      seen += chunk.toString()
      const announced = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(seen)
      if (announced) {
        clearTimeout(timer)
        seen = null
        resolve(Number(announced[1]))
      }
    })
  })
  const created = await httpRequest(port, 'PUT', `/${bucket}`)
  assert.equal(created.status, 200, created.body.toString())
  const saved = {}
  const environment = {
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
    // Never a look for an EC2 metadata service (an address off this machine).
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: path.join(tempDir(t), 'none'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(tempDir(t), 'none'),
  }
  for (const [name, value] of Object.entries(environment)) {
    saved[name] = process.env[name]
    process.env[name] = value
  }
  t.after(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })
  return {
    port,
    async keys() {
      const listing = await httpRequest(port, 'GET', `/${bucket}?list-type=2`)
      assert.equal(listing.status, 200, listing.body.toString())
      return [...listing.body.toString().matchAll(/<Key>([^<]+)<\/Key>/g)].map((match) => match[1]).sort()
    },
    async object(key) {
      const fetched = await httpRequest(port, 'GET', `/${bucket}/${key}`)
      assert.equal(fetched.status, 200, `GET ${key}`)
      return fetched.body
    },
  }
}

test('backup to s3:// stores an encrypted, hashed object, skips an unchanged mailbox, purges', async (t) => {
  const moto = await startMoto(t, 'node-backups')
  const { mailbox, registry, address } = await openMailbox(t)
  const { mailboxId } = await registry.lookup(address)
  await mailbox.append('INBOX', message({ subject: MARKER, body: MARKER }))

  const first = await mailbox.backup('s3://node-backups/team/mail')
  assert.equal(first.skipped, false)
  assert.equal(first.objectKey, `team/mail/${mailboxId}/${first.version}.sqlite`)
  assert.deepEqual(await moto.keys(), [`team/mail/${mailboxId}/${first.version}.json`, first.objectKey])
  const stored = await moto.object(first.objectKey)
  assert.equal(stored.length, first.size)
  assert.equal(first.hash, crypto.createHash('sha256').update(stored).digest('hex'))
  assert.ok(!stored.includes(MARKER), 'the stored object is encrypted')
  assert.ok(!stored.subarray(0, 16).equals(Buffer.from('SQLite format 3\0')), 'no plaintext header')
  const manifest = JSON.parse((await moto.object(`team/mail/${mailboxId}/${first.version}.json`)).toString())
  assert.equal(manifest.sha256, first.hash)

  const again = await mailbox.backup('s3://node-backups/team/mail')
  assert.equal(again.skipped, true)
  assert.equal(again.version, first.version)

  await mailbox.append('INBOX', message({ subject: 'second' }))
  const second = await mailbox.backup('s3://node-backups/team/mail')
  assert.equal(second.skipped, false)
  assert.equal((await moto.keys()).length, 4)

  await mailbox.close()
  await registry.removeAccount(address, { purgeBackups: 's3://node-backups/team/mail' })
  assert.deepEqual(await moto.keys(), [])
})

test('backup to a missing bucket rejects with BACKUP_STORAGE', async (t) => {
  await startMoto(t, 'present')
  const { mailbox } = await openMailbox(t)
  await mailbox.append('INBOX', message())
  await rejectsWithCode(mailbox.backup('s3://absent/prefix'), 'BACKUP_STORAGE')
})
