#!/usr/bin/env node
// Only sealmail's find() queries of compare.js, in a loop, for a profiler:
//   node --perf-basic-prof bench/node/profile-find.js   (under `perf record -g`)
// Prints the time (elapsed and CPU) per query of each kind; BENCH_PROFILE_SECONDS (default 10) per kind,
// BENCH_KINDS picks them (page, listing, bySender; `hop`: the floor of one call; `parsePage`:
// JSON.parse of a page's text alone; `<kind>x4`: four in flight, BENCH_IN_FLIGHT to change),
// BENCH_APPEND=single fills the store one append per message instead of one batch per folder.
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Registry, Mailbox } = require('../..')

const MESSAGES = Number(process.env.BENCH_MESSAGES || 1000)
const SECONDS = Number(process.env.BENCH_PROFILE_SECONDS || 10)
const KINDS = (process.env.BENCH_KINDS || 'page,listing,bySender').split(',')

function raw(i) {
  const from = `sender${i % 40}@example${i % 40 % 7}.org`
  const date = new Date(Date.UTC(2026, 0, 1) + i * 3_600_000).toUTCString().replace('GMT', '+0000')
  const body = Array.from({ length: 40 }, (_, l) => `line ${l} of message ${i} alpha bravo charlie delta`).join('\r\n')
  return Buffer.from(`From: Sender ${i % 40} <${from}>\r\nTo: Alice <alice@example.com>\r\nSubject: report ${i}\r\nDate: ${date}\r\nMessage-ID: <${i}@example.org>\r\n\r\n${body}\r\n`)
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealmail-profile-'))
  try {
    const registry = await Registry.open(dir)
    await registry.addAccount('p@example.com', { password: 'profile password', kdf: { memoryKib: 8, iterations: 1, parallelism: 1 } })
    const mailbox = await Mailbox.open(dir, 'p@example.com', 'profile password')
    // BENCH_APPEND=single: one append (one transaction) per message, as compare.js fills its
    // query store; otherwise one appendMany per folder.
    const flags = (i) => ((i * 7) % 10 < 6 ? ['\\Seen'] : [])
    if (process.env.BENCH_APPEND === 'single') {
      for (let i = 0; i < MESSAGES; i++) await mailbox.append(i % 10 === 0 ? 'Archive' : 'INBOX', raw(i), { flags: flags(i) })
    } else {
      for (const folder of ['INBOX', 'Archive']) {
        const batch = []
        for (let i = 0; i < MESSAGES; i++) {
          if ((i % 10 === 0) === (folder === 'Archive')) batch.push({ raw: raw(i), flags: flags(i) })
        }
        await mailbox.appendMany(folder, batch)
      }
    }
    const projection = { uid: 1, subject: 1, from: 1, date: 1, size: 1, seen: 1, flagged: 1 }
    const queries = {
      page: () => mailbox.find('messages', { folder: 'INBOX', seen: false }, { projection, sort: { uid: -1 }, limit: 50 }),
      listing: () => mailbox.find('messages', { folder: 'INBOX' }, { projection, sort: { uid: 1 } }),
      bySender: (i) => mailbox.find('messages', { 'from.address': `sender${i % 40}@example${i % 40 % 7}.org` }, { projection, sort: { date: -1 }, limit: 50 }),
    }
    const pageText = JSON.stringify(await queries.page())
    // The floor of one call (conversion, thread-pool hop and back, no rows) and the cost of
    // turning a page's JSON text into JS values on the JS thread.
    queries.hop = () => mailbox.count('folders', { path: 'nope' })
    queries.parsePage = async () => JSON.parse(pageText)
    // The same queries with several in flight (a server answering several clients at once).
    const inFlight = Number(process.env.BENCH_IN_FLIGHT || 4)
    for (const kind of ['page', 'listing', 'bySender']) {
      queries[`${kind}x${inFlight}`] = async (n) => {
        const results = await Promise.all(Array.from({ length: inFlight }, (_, k) => queries[kind](n * inFlight + k)))
        return results[0].length
      }
    }
    for (const kind of KINDS) {
      const started = process.hrtime.bigint()
      const cpuStarted = process.cpuUsage()
      const deadline = started + BigInt(SECONDS * 1e9)
      let n = 0
      let rows = 0
      while (process.hrtime.bigint() < deadline) {
        const result = await queries[kind](n)
        rows = Array.isArray(result) ? result.length : result
        n++
      }
      const micros = Number(process.hrtime.bigint() - started) / 1e3 / n
      // CPU time of the whole process (the pool threads included): less sensitive to the
      // machine's load than elapsed time.
      const cpu = process.cpuUsage(cpuStarted)
      const cpuMicros = (cpu.user + cpu.system) / n
      console.log(`${kind}: ${micros.toFixed(1)} µs per query, ${cpuMicros.toFixed(1)} µs CPU (${rows} rows, ${n} queries)`)
    }
    await mailbox.close()
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
