#!/usr/bin/env node
// sealmail's Node binding against Forward Email's storage stack (npm
// `better-sqlite3-multiple-ciphers` with its chacha20 cipher and a key, plain SQL) on the same
// 1,000 messages, in the same Node process. Prints one line per measurement and the ratio.
//
//   npm run bench    (installs the peer into bench/node, builds the addon in release mode, runs)
//
// Conservative for the peer: it gets the header fields pre-parsed (sealmail parses MIME on
// every append), keeps no full-text index (sealmail maintains its FTS5 index: appends leave the
// text waiting and the index takes it in batches; the timed runs end with `indexPending()`, so
// every sealmail append figure includes indexing all the messages), and its
// queries run synchronously on the JS thread (sealmail's hop to the thread pool and back is
// inside every sealmail figure). Appends are measured twice: one transaction per message
// (`append`), and batched with the same batches on both sides (`appendMany`: one transaction
// per folder's batch; the peer runs the same inserts in one transaction per batch).
// Queries are measured with one caller awaiting each answer (latency: every sealmail call pays
// the hop to the thread pool and back) and with `BENCH_CALLERS` (default 4) calls in flight,
// as a server answering several clients at once makes them: the peer's calls are synchronous
// and run one after another either way; sealmail's overlap (one answer is parsed on the JS
// thread while the next query runs on a pool thread).
//
// The machine is shared, so every figure is the median of several runs, and the two sides'
// runs alternate (peer, sealmail, peer, ...) so that a change of load hits both alike: appends
// into fresh stores `BENCH_APPEND_REPEATS` times (default 3), queries `BENCH_REPEATS` times
// (default 5) on the same stores. Each line also gives the ratio of CPU time (the peer's over
// sealmail's, the whole process's, so sealmail's pool threads count): waiting for a core costs
// none, so it moves less with the machine's load than elapsed time does.
'use strict'

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const crypto = require('node:crypto')
const Database = require('better-sqlite3-multiple-ciphers')
const { Registry, Mailbox } = require('../..')

const MESSAGES = Number(process.env.BENCH_MESSAGES || 1000)
const QUERY_ROUNDS = Number(process.env.BENCH_ROUNDS || 200)
const REPEATS = Number(process.env.BENCH_REPEATS || 5)
const APPEND_REPEATS = Number(process.env.BENCH_APPEND_REPEATS || 3)
// Callers with a query in flight at once for the concurrent find lines (libuv's pool has 4
// threads by default).
const CALLERS = Number(process.env.BENCH_CALLERS || 4)
const WORDS = 'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu'.split(' ')

function corpus() {
  let seed = 42
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648)
  const pick = (list) => list[Math.floor(random() * list.length)]
  const senders = Array.from({ length: 40 }, (_, i) => ({ name: `Sender ${i}`, address: `sender${i}@example${i % 7}.org` }))
  return Array.from({ length: MESSAGES }, (_, i) => {
    const from = pick(senders)
    const subject = `${pick(WORDS)} ${pick(WORDS)} report ${i}`
    const date = new Date(Date.UTC(2026, 0, 1) + i * 3_600_000)
    const lines = Array.from({ length: 20 + Math.floor(random() * 80) }, () => Array.from({ length: 10 }, () => pick(WORDS)).join(' '))
    const raw = Buffer.from(
      `From: ${from.name} <${from.address}>\r\nTo: Alice <alice@example.com>\r\nSubject: ${subject}\r\n` +
        `Date: ${date.toUTCString().replace('GMT', '+0000')}\r\nMessage-ID: <${i}.${crypto.randomUUID()}@example.org>\r\n` +
        `MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${lines.join('\r\n')}\r\n`,
    )
    return { raw, from, subject, date: date.toISOString().replace(/\.\d+Z$/, 'Z'), seen: random() < 0.6, folder: i % 10 === 0 ? 'Archive' : 'INBOX' }
  })
}

/** Time `fn` after one untimed run (statement caches, JIT and page cache warm for both). */
async function time(label, fn, { warm = true } = {}) {
  if (warm) await fn()
  const started = process.hrtime.bigint()
  const cpuStarted = process.cpuUsage()
  const result = await fn()
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const cpu = process.cpuUsage(cpuStarted)
  return { label, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, result }
}

/** The corpus split into one batch per folder, in corpus order within each. */
function batches(messages) {
  const byFolder = new Map()
  for (const m of messages) {
    if (!byFolder.has(m.folder)) byFolder.set(m.folder, [])
    byFolder.get(m.folder).push(m)
  }
  return [...byFolder]
}

async function openSealmail(dir, address) {
  const registry = await Registry.open(dir)
  await registry.addAccount(address, { password: 'bench password 1', kdf: { memoryKib: 8, iterations: 1, parallelism: 1 } })
  return Mailbox.open(dir, address, 'bench password 1')
}

async function sealmailAppends(dir, messages) {
  const batched = await openSealmail(path.join(dir, 'batched'), 'bob@example.com')
  const appendBatched = await time('append batched', async () => {
    for (const [folder, batch] of batches(messages)) {
      await batched.appendMany(folder, batch.map((m) => ({ raw: m.raw, flags: m.seen ? ['\\Seen'] : [], internalDate: new Date(m.date) })))
    }
    // Appends leave their text to the full-text index in batches; what is still waiting is
    // indexed inside the timed run, so the figure includes indexing every message.
    await batched.indexPending()
  }, { warm: false })
  await batched.close()
  const mailbox = await openSealmail(path.join(dir, 'single'), 'alice@example.com')
  const append = await time('append', async () => {
    for (const m of messages) {
      await mailbox.append(m.folder, m.raw, { flags: m.seen ? ['\\Seen'] : [], internalDate: new Date(m.date) })
    }
    await mailbox.indexPending()
  }, { warm: false })
  return { append, appendBatched, mailbox }
}

/**
 * `QUERY_ROUNDS` calls of `query(i)`, `CALLERS` at a time: what a server answering several
 * clients at once asks of the store. The peer's calls are synchronous, so for it this is the
 * same work in the same order as one caller; sealmail's calls overlap (the JS thread parses
 * one answer while a pool thread runs the next query).
 */
async function concurrently(query) {
  let rows
  for (let i = 0; i < QUERY_ROUNDS; i += CALLERS) {
    const answers = await Promise.all(Array.from({ length: CALLERS }, (_, k) => query(i + k)))
    rows = answers[0]
  }
  return rows.length
}

/** The sender of the `i`th by-sender query (the same sequence on both sides). */
const sender = (i) => `sender${i % 40}@example${i % 40 % 7}.org`

/** `rounds` calls of `query(i)`, each awaited before the next: one caller at a time. */
async function oneAtATime(rounds, query) {
  let rows
  for (let i = 0; i < rounds; i++) rows = await query(i)
  return rows.length
}

/** The three queries on an open sealmail mailbox, each timed over its rounds. */
function sealmailQueries(mailbox) {
  const projection = { uid: 1, subject: 1, from: 1, date: 1, size: 1, seen: 1, flagged: 1 }
  const page = () => mailbox.find('messages', { folder: 'INBOX', seen: false }, { projection, sort: { uid: -1 }, limit: 50 })
  const listing = () => mailbox.find('messages', { folder: 'INBOX' }, { projection, sort: { uid: 1 } })
  const bySender = (i) => mailbox.find('messages', { 'from.address': sender(i) }, { projection, sort: { date: -1 }, limit: 50 })
  // The same sender query through the general JSON path (`$elemMatch` is never answered from
  // the address table): what `from.address` equality cost before that table.
  const bySenderJson = (i) => mailbox.find('messages', { from: { $elemMatch: { address: sender(i) } } }, { projection, sort: { date: -1 }, limit: 50 })
  return {
    bySenderJson: () => time('find by sender, JSON path', () => oneAtATime(QUERY_ROUNDS, bySenderJson)),
    page: () => time('find page', () => oneAtATime(QUERY_ROUNDS, page)),
    listing: () => time('find all', () => oneAtATime(QUERY_ROUNDS / 10, listing)),
    bySender: () => time('find by sender', () => oneAtATime(QUERY_ROUNDS, bySender)),
    pageConcurrent: () => time('find page, concurrent callers', () => concurrently(page)),
    bySenderConcurrent: () => time('find by sender, concurrent callers', () => concurrently(bySender)),
  }
}

function openPeer(file) {
  const db = new Database(file)
  db.pragma(`cipher='chacha20'`)
  db.pragma(`key='${crypto.randomBytes(32).toString('hex')}'`)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec(`
    CREATE TABLE mailboxes (id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1, modseq INTEGER NOT NULL DEFAULT 1);
    CREATE TABLE messages (
      id INTEGER PRIMARY KEY, mailbox INTEGER NOT NULL REFERENCES mailboxes(id), uid INTEGER NOT NULL, modseq INTEGER NOT NULL,
      seen INTEGER NOT NULL, flagged INTEGER NOT NULL DEFAULT 0, idate TEXT NOT NULL, hdate TEXT, subject TEXT,
      from_addr TEXT, to_addr TEXT, size INTEGER NOT NULL, raw BLOB NOT NULL);
    CREATE UNIQUE INDEX messages_mailbox_uid ON messages (mailbox, uid);
    CREATE INDEX messages_mailbox_seen ON messages (mailbox, seen);
    CREATE INDEX messages_from ON messages (json_extract(from_addr, '$[0].address'));
    INSERT INTO mailboxes (path) VALUES ('INBOX'), ('Archive');
  `)
  return db
}

async function peerAppends(dir, messages) {
  const batchedDb = openPeer(path.join(dir, 'peer-batched.sqlite'))
  const appendBatch = peerAppender(batchedDb).appendMany
  const appendBatched = await time('append batched', async () => {
    for (const [, batch] of batches(messages)) appendBatch(batch)
  }, { warm: false })
  batchedDb.close()
  const db = openPeer(path.join(dir, 'peer.sqlite'))
  const { appendOne } = peerAppender(db)
  const append = await time('append', async () => {
    for (const m of messages) appendOne(m)
  }, { warm: false })
  return { append, appendBatched, db }
}

/** The peer's append: one message per transaction, or a batch in one transaction. */
function peerAppender(db) {
  const folderId = { INBOX: 1, Archive: 2 }
  const nextUid = db.prepare('UPDATE mailboxes SET uidnext = uidnext + 1, modseq = modseq + 1 WHERE id = ? RETURNING uidnext - 1 AS uid, modseq')
  const insert = db.prepare(`INSERT INTO messages (mailbox, uid, modseq, seen, idate, hdate, subject, from_addr, to_addr, size, raw)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
  const insertOne = (m) => {
    const { uid, modseq } = nextUid.get(folderId[m.folder])
    insert.run(folderId[m.folder], uid, modseq, m.seen ? 1 : 0, m.date, m.date, m.subject, JSON.stringify([m.from]),
      JSON.stringify([{ name: 'Alice', address: 'alice@example.com' }]), m.raw.length, m.raw)
  }
  return {
    appendOne: db.transaction(insertOne),
    appendMany: db.transaction((batch) => batch.forEach(insertOne)),
  }
}

/** The same three queries in plain SQL on the peer's database, each timed over its rounds. */
function peerQueries(db) {
  const columns = 'uid, subject, from_addr, hdate, size, seen, flagged'
  const shape = (row) => ({ uid: row.uid, subject: row.subject, from: JSON.parse(row.from_addr), date: row.hdate, size: row.size, seen: !!row.seen, flagged: !!row.flagged })
  const pageQuery = db.prepare(`SELECT ${columns} FROM messages WHERE mailbox = 1 AND seen = 0 ORDER BY uid DESC LIMIT 50`)
  const allQuery = db.prepare(`SELECT ${columns} FROM messages WHERE mailbox = 1 ORDER BY uid`)
  const senderQuery = db.prepare(`SELECT ${columns} FROM messages WHERE json_extract(from_addr, '$[0].address') = ? ORDER BY hdate DESC LIMIT 50`)
  // Synchronous calls: the loops below never yield to the event loop, as a caller of
  // better-sqlite3 would not.
  const page = () => pageQuery.all().map(shape)
  const bySender = (i) => senderQuery.all(sender(i)).map(shape)
  return {
    page: () => time('find page', async () => {
      let rows
      for (let i = 0; i < QUERY_ROUNDS; i++) rows = page()
      return rows.length
    }),
    listing: () => time('find all', async () => {
      let rows
      for (let i = 0; i < QUERY_ROUNDS / 10; i++) rows = allQuery.all().map(shape)
      return rows.length
    }),
    bySender: () => time('find by sender', async () => {
      let rows
      for (let i = 0; i < QUERY_ROUNDS; i++) rows = bySender(i)
      return rows.length
    }),
    pageConcurrent: () => time('find page, concurrent callers', () => concurrently(async () => page())),
    bySenderConcurrent: () => time('find by sender, concurrent callers', () => concurrently(async (i) => bySender(i))),
  }
}

/** The run with the median time of `runs` (all of one measurement). */
function median(runs) {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds)
  return sorted[Math.floor(sorted.length / 2)]
}

/** Run `peerRun` and `ourRun` alternately `repeats` times; the median of each side. */
async function alternate(repeats, peerRun, ourRun) {
  const peer = []
  const ours = []
  for (let i = 0; i < repeats; i++) {
    peer.push(await peerRun(i))
    ours.push(await ourRun(i))
  }
  return { peer: median(peer), ours: median(ours), spread: spread(ours), peerSpread: spread(peer), cpu: cpuRatio(peer, ours) }
}

/**
 * The peer's median CPU time over ours: the process's CPU time (all threads: sealmail's work
 * runs on libuv's pool) of each side's runs. Less sensitive to other processes' load than
 * elapsed time, since waiting for a core costs no CPU time; on a saturated server it is what
 * bounds throughput.
 */
function cpuRatio(peer, ours) {
  const medianCpu = (runs) => [...runs].map((r) => r.cpuSeconds).sort((a, b) => a - b)[Math.floor(runs.length / 2)]
  return medianCpu(peer) / medianCpu(ours)
}

/** (slowest - fastest) / median of a side's runs: how noisy the figure is. */
function spread(runs) {
  const times = runs.map((r) => r.seconds)
  return (Math.max(...times) - Math.min(...times)) / median(runs).seconds
}

async function main() {
  const messages = corpus()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sealmail-bench-'))
  try {
    let peerDb
    let ourMailbox
    const appends = { append: { peer: [], ours: [] }, appendBatched: { peer: [], ours: [] } }
    for (let i = 0; i < APPEND_REPEATS; i++) {
      const last = i === APPEND_REPEATS - 1
      const peer = await peerAppends(fs.mkdtempSync(path.join(dir, 'peer-')), messages)
      const ours = await sealmailAppends(fs.mkdtempSync(path.join(dir, 'sealmail-')), messages)
      for (const kind of ['append', 'appendBatched']) {
        appends[kind].peer.push(peer[kind])
        appends[kind].ours.push(ours[kind])
      }
      // The last stores stay open for the queries; the others are closed and removed.
      if (last) {
        peerDb = peer.db
        ourMailbox = ours.mailbox
      } else {
        peer.db.close()
        await ours.mailbox.close()
      }
    }
    const peerRuns = peerQueries(peerDb)
    const ourRuns = sealmailQueries(ourMailbox)
    const queries = {}
    for (const kind of ['page', 'listing', 'bySender', 'pageConcurrent', 'bySenderConcurrent']) {
      queries[kind] = await alternate(REPEATS, peerRuns[kind], ourRuns[kind])
    }
    queries.bySenderJson = await alternate(REPEATS, peerRuns.bySender, ourRuns.bySenderJson)
    peerDb.close()
    await ourMailbox.close()
    const rate = (m, ops) => ops / m.seconds
    const appendFigure = (kind) => ({ peer: median(appends[kind].peer), ours: median(appends[kind].ours), spread: spread(appends[kind].ours), peerSpread: spread(appends[kind].peer), cpu: cpuRatio(appends[kind].peer, appends[kind].ours) })
    const rows = [
      ['append, one transaction each (messages/s)', appendFigure('append'), MESSAGES],
      ['append, batched per folder (messages/s)', appendFigure('appendBatched'), MESSAGES],
      [`find: INBOX unseen, newest 50 (queries/s, ${queries.page.ours.result} rows)`, queries.page, QUERY_ROUNDS],
      [`find: all of INBOX (queries/s, ${queries.listing.ours.result} rows)`, queries.listing, QUERY_ROUNDS / 10],
      [`find: by sender, newest 50 (queries/s, ${queries.bySender.ours.result} rows)`, queries.bySender, QUERY_ROUNDS],
      [`  the same through the JSON path (no address table)`, queries.bySenderJson, QUERY_ROUNDS],
      [`find: INBOX unseen, newest 50, ${CALLERS} callers at once`, queries.pageConcurrent, QUERY_ROUNDS],
      [`find: by sender, newest 50, ${CALLERS} callers at once`, queries.bySenderConcurrent, QUERY_ROUNDS],
    ]
    for (const kind of ['page', 'listing', 'bySender', 'bySenderJson', 'pageConcurrent', 'bySenderConcurrent']) {
      if (queries[kind].ours.result !== queries[kind].peer.result) {
        throw new Error(`the two stores returned different row counts for ${kind}`)
      }
    }
    console.log(`${MESSAGES} messages, ${QUERY_ROUNDS} query rounds, medians of ${APPEND_REPEATS} append / ${REPEATS} query runs (alternating); sealmail vs better-sqlite3-multiple-ciphers (chacha20); load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
    for (const [label, figure, ops] of rows) {
      const ourRate = rate(figure.ours, ops)
      const peerRate = rate(figure.peer, ops)
      console.log(`${label.padEnd(58)} sealmail ${ourRate.toFixed(0).padStart(7)}  peer ${peerRate.toFixed(0).padStart(7)}  ratio ${(ourRate / peerRate).toFixed(2)}x  (spread ${(figure.spread * 100).toFixed(0)}% / ${(figure.peerSpread * 100).toFixed(0)}%; CPU time ratio ${figure.cpu.toFixed(2)}x)`)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
