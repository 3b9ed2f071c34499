#!/usr/bin/env node
// An inbound MX built on the npm `smtp-server` package that stores mail in sealmail without
// holding any mailbox key: every message is sealed to its recipient's public key and queued
// (`deliver()`), and lands in INBOX when the owner next logs in.
//
//   node examples/node/mx.js --data-dir ./sealmail-data [--host 127.0.0.1] [--port 2525]
//
// `createMx()` is exported so tests (and your own server) can run it on a chosen port.
'use strict'

const os = require('node:os')
const { SMTPServer } = require('smtp-server')
// Installed from npm this is `require('sealmail')`.
const { Registry, deliver } = require('../..')

/** Largest message accepted, announced in EHLO (SIZE) and enforced while receiving. */
const MAX_MESSAGE_BYTES = 50 * 1024 * 1024

/**
 * Build an MX for the accounts in `dataDir`. Unknown recipients are refused at RCPT TO; a
 * message is acknowledged with 250 only after it is durably queued for every recipient.
 */
async function createMx({ dataDir, hostname = os.hostname(), logger = false }) {
  const registry = await Registry.open(dataDir)
  return new SMTPServer({
    name: hostname,
    logger,
    // An MX on the public internet would offer STARTTLS with a real certificate; this example
    // listens on 127.0.0.1 and accepts mail without authentication, as MXs do.
    disabledCommands: ['AUTH', 'STARTTLS'],
    size: MAX_MESSAGE_BYTES,
    async onRcptTo(address, _session, callback) {
      try {
        const account = await registry.lookup(address.address)
        if (!account) {
          return callback(smtpError(550, `5.1.1 <${address.address}>: no such user`))
        }
        callback()
      } catch (error) {
        callback(smtpError(451, `4.3.0 temporary failure: ${error.code ?? error.message}`))
      }
    },
    onData(stream, session, callback) {
      const chunks = []
      stream.on('data', (chunk) => chunks.push(chunk))
      stream.on('error', callback)
      stream.on('end', async () => {
        if (stream.sizeExceeded) {
          return callback(smtpError(552, '5.3.4 message exceeds the size limit'))
        }
        const raw = Buffer.concat([traceHeaders(session, hostname), ...chunks])
        try {
          for (const recipient of session.envelope.rcptTo) {
            await deliver(dataDir, recipient.address, raw)
          }
          callback(null, 'queued, sealed for the recipient')
        } catch (error) {
          callback(smtpError(451, `4.3.0 could not queue the message: ${error.code ?? error.message}`))
        }
      })
    },
  })
}

/** `Return-Path` and `Received` (RFC 5321 section 4.4), prepended as every MTA does. */
function traceHeaders(session, hostname) {
  const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : ''
  const helo = session.hostNameAppeared || session.clientHostname || 'unknown'
  const received =
    `Received: from ${helo} (${session.clientHostname} [${session.remoteAddress}])\r\n` +
    `\tby ${hostname} (sealmail example MX) with ${session.transmissionType} id ${session.id};\r\n` +
    `\t${new Date().toUTCString().replace('GMT', '+0000')}\r\n`
  return Buffer.from(`Return-Path: <${from}>\r\n${received}`)
}

function smtpError(responseCode, message) {
  const error = new Error(message)
  error.responseCode = responseCode
  return error
}

function parseArgs(argv) {
  const options = { dataDir: process.env.SEALMAIL_DATA_DIR || './sealmail-data', host: '127.0.0.1', port: 2525 }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (flag === '--data-dir') options.dataDir = value
    else if (flag === '--host') options.host = value
    else if (flag === '--port') options.port = Number(value)
    else throw new Error(`unknown option ${flag}`)
  }
  return options
}

if (require.main === module) {
  const { dataDir, host, port } = parseArgs(process.argv.slice(2))
  createMx({ dataDir, logger: true })
    .then((server) => {
      server.on('error', (error) => console.error('smtp error:', error.message))
      server.listen(port, host, () => console.log(`sealmail example MX on ${host}:${port}, data in ${dataDir}`))
      process.on('SIGINT', () => server.close(() => process.exit(0)))
    })
    .catch((error) => {
      console.error(error.message)
      process.exit(1)
    })
}

module.exports = { createMx, MAX_MESSAGE_BYTES }
