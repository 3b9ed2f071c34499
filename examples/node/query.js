#!/usr/bin/env node
// Open a mailbox and run Mongo-style queries against it.
//
//   SEALMAIL_PASSWORD=... node examples/node/query.js --data-dir ./sealmail-data --address you@example.com
//
// Without arguments it creates a throw-away data directory with a demo account and three
// messages, so it runs anywhere. Every result is printed as one JSON line `{step, result}`.
// (The password comes from the environment, never from the command line, where other users
// of the machine could read it.)
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
// Installed from npm this is `require('sealmail')`.
const { Mailbox, Registry } = require('../..')

async function main() {
  const args = process.argv.slice(2)
  let dataDir = valueOf(args, '--data-dir')
  let address = valueOf(args, '--address')
  let password = process.env.SEALMAIL_PASSWORD
  let demoDir = null
  if (!dataDir) {
    demoDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealmail-query-example-'))
    ;({ dataDir, address, password } = await createDemo(demoDir))
  } else if (!address || !password) {
    throw new Error('--address and SEALMAIL_PASSWORD are required with --data-dir')
  }

  const mailbox = await Mailbox.open(dataDir, address, password)
  try {
    const show = (step, result) => console.log(JSON.stringify({ step, result }))

    show('unseen in INBOX', await mailbox.count('messages', { folder: 'INBOX', seen: false }))
    show(
      'latest 10 in INBOX',
      await mailbox.find(
        'messages',
        { folder: 'INBOX' },
        { projection: { uid: 1, subject: 1, from: 1, date: 1, seen: 1 }, sort: { uid: -1 }, limit: 10 },
      ),
    )
    show(
      'from example.org, subject starting with "Re:"',
      await mailbox.find(
        'messages',
        { 'from.address': { $regex: '@example\\.org$' }, subject: { $regex: '^re:', $options: 'i' } },
        { projection: { uid: 1, subject: 1 } },
      ),
    )
    show('larger than 200 bytes', await mailbox.count('messages', { size: { $gt: 200 } }))
    show('senders', await mailbox.distinct('messages', 'from.address'))

    // Application data lives in the same encrypted file, in collections the app declares.
    await mailbox.defineCollection('notes', {
      fields: { uid: 'integer', text: 'text', tags: 'json' },
      indexes: ['uid'],
    })
    const first = await mailbox.findOne('messages', { folder: 'INBOX' }, { sort: { uid: 1 } })
    if (first) {
      await mailbox.insertOne('notes', { uid: first.uid, text: 'call back', tags: ['todo'] })
      await mailbox.updateMany('notes', { uid: first.uid }, { $push: { tags: 'phone' } })
    }
    show('notes', await mailbox.find('notes', {}, { projection: { _id: 0 } }))
  } finally {
    await mailbox.close()
    if (demoDir) fs.rmSync(demoDir, { recursive: true, force: true })
  }
}

/** A registry with one account holding three messages. */
async function createDemo(dataDir) {
  const registry = await Registry.open(dataDir)
  const address = 'demo@example.com'
  const { password } = await registry.addAccount(address)
  const mailbox = await Mailbox.open(dataDir, address, password)
  const messages = [
    ['Bob <bob@example.org>', 'Lunch on Friday?', 'Shall we meet at noon?', []],
    ['Carol <carol@example.net>', 'Quarterly report', 'The report is attached in spirit.', ['\\Seen']],
    ['Bob <bob@example.org>', 'Re: Lunch on Friday?', 'Noon works. See you there, and bring the map.', []],
  ]
  for (const [from, subject, body, flags] of messages) {
    const raw = Buffer.from(
      `From: ${from}\r\nTo: ${address}\r\nSubject: ${subject}\r\n` +
        `Date: ${new Date().toUTCString()}\r\nMessage-ID: <${Math.random().toString(16).slice(2)}@example.org>\r\n\r\n${body}\r\n`,
    )
    await mailbox.append('INBOX', raw, { flags })
  }
  await mailbox.close()
  return { dataDir, address, password }
}

function valueOf(args, flag) {
  const index = args.indexOf(flag)
  return index === -1 ? undefined : args[index + 1]
}

main().catch((error) => {
  console.error(`${error.code ?? 'ERROR'}: ${error.message}`)
  process.exit(1)
})
