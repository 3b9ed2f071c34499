// imapflow against the real `sealmail serve` over implicit TLS, verifying the server's
// self-signed certificate. Each step asserts; the first failure exits non-zero with its reason.
// Environment: IMAPS_PORT, CAFILE, ADDRESS, PASSWORD. Prints one "ok <step>" line per step passed.
import { ImapFlow } from 'imapflow';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

// The harness kills this process too, but a hung step should say which one it was.
let step = 'start';
const watchdog = setTimeout(() => {
    console.error(`timed out in step: ${step}`);
    process.exit(3);
}, 60_000);

const ca = readFileSync(process.env.CAFILE);

function client(options = {}) {
    return new ImapFlow({
        host: '127.0.0.1',
        port: Number(process.env.IMAPS_PORT),
        secure: true,
        tls: { ca, servername: 'localhost' },
        auth: { user: process.env.ADDRESS, pass: process.env.PASSWORD },
        logger: false,
        ...options
    });
}

/** JSON for assertion messages, with the BigInt, Set and Map values imapflow returns. */
function show(value) {
    return JSON.stringify(value, (key, v) =>
        typeof v === 'bigint' ? `${v}n` : v instanceof Set ? [...v] : v instanceof Map ? Object.fromEntries(v) : v
    );
}

function passed(name) {
    console.log(`ok ${name}`);
}

function message(subject, body) {
    return Buffer.from(
        `From: Alice <alice@example.org>\r\nTo: user@example.org\r\nSubject: ${subject}\r\n` +
            `Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n` +
            `Content-Type: text/plain; charset=utf-8\r\n\r\n${body}\r\n`
    );
}

/** Resolve with the first event `name` from `emitter` whose payload passes `accept`. */
function nextEvent(emitter, name, accept, timeoutMs = 15_000) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            emitter.off(name, listener);
            reject(new Error(`no ${name} event within ${timeoutMs} ms`));
        }, timeoutMs);
        function listener(payload) {
            if (accept(payload)) {
                clearTimeout(timer);
                emitter.off(name, listener);
                resolve(payload);
            }
        }
        emitter.on(name, listener);
    });
}

const main = client();
await main.connect();
assert.ok(main.capabilities.has('IDLE'), 'IDLE advertised');
assert.ok(main.capabilities.has('QRESYNC'), 'QRESYNC advertised');
passed('connect');

step = 'list';
await main.mailboxCreate('Archive');
const folders = await main.list();
const paths = folders.map(folder => folder.path);
assert.ok(paths.includes('INBOX'), `INBOX listed: ${paths}`);
assert.ok(paths.includes('Archive'), `Archive listed: ${paths}`);
passed('list');

step = 'append';
const appended = [];
for (const [subject, body, flags] of [
    ['first note', 'alpha body', ['\\Seen']],
    ['second note', 'bravo body with needle-7q', []],
    ['third note', 'charlie body', ['\\Seen']]
]) {
    const result = await main.append('INBOX', message(subject, body), flags);
    assert.ok(result.uid > 0, `APPENDUID gives a uid: ${show(result)}`);
    appended.push(result.uid);
}
assert.deepEqual([...appended].sort((a, b) => a - b), appended, 'UIDs ascend');
passed('append');

step = 'fetch';
const inbox = await main.mailboxOpen('INBOX');
assert.equal(inbox.exists, 3);
assert.ok(inbox.highestModseq > 0n, 'HIGHESTMODSEQ reported');
const fetched = await main.fetchAll('1:*', { envelope: true, flags: true, uid: true, source: true, bodyStructure: true });
assert.deepEqual(
    fetched.map(m => m.envelope.subject),
    ['first note', 'second note', 'third note']
);
assert.equal(fetched[0].envelope.from[0].address, 'alice@example.org');
assert.ok(fetched[0].flags.has('\\Seen'));
assert.ok(!fetched[1].flags.has('\\Seen'));
assert.ok(fetched[1].source.toString().includes('needle-7q'), 'full source fetched');
assert.equal(fetched[1].bodyStructure.type, 'text/plain');
const download = await main.download(String(appended[2]), '1', { uid: true });
let text = '';
for await (const chunk of download.content) {
    text += chunk.toString();
}
assert.ok(text.includes('charlie body'), `body part downloaded: ${text}`);
passed('fetch');

step = 'search';
assert.deepEqual(await main.search({ seen: false }, { uid: true }), [appended[1]]);
assert.deepEqual(await main.search({ body: 'needle-7q' }, { uid: true }), [appended[1]]);
assert.deepEqual(await main.search({ subject: 'third' }, { uid: true }), [appended[2]]);
assert.deepEqual(await main.search({ from: 'alice@example.org' }, { uid: true }), appended);
passed('search');

step = 'flag';
assert.ok(await main.messageFlagsAdd(String(appended[0]), ['\\Flagged', 'project-x'], { uid: true }));
assert.ok(await main.messageFlagsRemove(String(appended[0]), ['\\Seen'], { uid: true }));
const flagged = await main.fetchOne(String(appended[0]), { flags: true, modseq: true }, { uid: true });
assert.deepEqual([...flagged.flags].sort(), ['\\Flagged', 'project-x']);
assert.deepEqual(await main.search({ flagged: true }, { uid: true }), [appended[0]]);
passed('flag');

step = 'move';
const moved = await main.messageMove(String(appended[2]), 'Archive', { uid: true });
assert.equal(moved.destination, 'Archive');
assert.ok(moved.uidMap && moved.uidMap.get(appended[2]) > 0, 'COPYUID/MOVE uid map');
assert.equal((await main.status('Archive', { messages: true })).messages, 1);
assert.equal(main.mailbox.exists, 2, 'the moved message left INBOX');
passed('move');

step = 'idle';
// `main` sits in IDLE on INBOX; a second connection appends and the first hears EXISTS.
const other = client();
await other.connect();
const existsSeen = nextEvent(main, 'exists', event => event.path === 'INBOX' && event.count === 3);
const idling = main.idle();
await new Promise(resolve => setTimeout(resolve, 300));
await other.append('INBOX', message('fourth note', 'delta body'));
const existsEvent = await existsSeen;
assert.equal(existsEvent.prevCount, 2);
passed('idle');
// Any command ends IDLE; the fourth message is visible right away.
const fourth = await main.fetchOne('*', { envelope: true, uid: true });
await idling;
assert.equal(fourth.envelope.subject, 'fourth note');
passed('idle-done');

step = 'qresync';
// A QRESYNC client remembers (UIDVALIDITY, HIGHESTMODSEQ), goes away, another client changes
// flags and expunges, and the next SELECT (QRESYNC ...) reports exactly those changes.
const resync = client({ qresync: true });
await resync.connect();
assert.ok(resync.enabled.has('QRESYNC'), 'ENABLE QRESYNC accepted');
const before = await resync.mailboxOpen('INBOX');
const known = { uidValidity: before.uidValidity, highestModseq: before.highestModseq };
const uidsBefore = await resync.search({ all: true }, { uid: true });
await resync.logout();

await other.mailboxOpen('INBOX');
assert.ok(await other.messageFlagsAdd(String(appended[1]), ['\\Answered'], { uid: true }));
assert.ok(await other.messageDelete(String(appended[0]), { uid: true }));

const again = client({ qresync: true });
await again.connect();
const vanished = [];
const changedFlags = [];
again.on('expunge', event => {
    if (event.vanished) {
        vanished.push(event.uid);
    }
});
again.on('flags', event => changedFlags.push(event));
const reopened = await again.mailboxOpen('INBOX', {
    uidValidity: known.uidValidity,
    changedSince: known.highestModseq
});
assert.ok(reopened.qresync, 'QRESYNC SELECT accepted');
assert.ok(reopened.highestModseq > known.highestModseq, 'HIGHESTMODSEQ moved on');
assert.deepEqual(vanished, [appended[0]], 'VANISHED (EARLIER) names the expunged UID');
assert.deepEqual(
    changedFlags.map(event => event.uid),
    [appended[1]],
    `changed messages since the old modseq: ${show(changedFlags)}`
);
assert.ok(changedFlags[0].flags.has('\\Answered'));
assert.equal(uidsBefore.length - 1, reopened.exists);
passed('qresync-select');

step = 'changedsince';
// FETCH ... (CHANGEDSINCE m VANISHED) from the same known state: the same answer as SELECT's.
const changed = await again.fetchAll(
    '1:*',
    { uid: true, flags: true, modseq: true },
    { uid: true, changedSince: known.highestModseq }
);
assert.deepEqual(changed.map(m => m.uid), [appended[1]]);
assert.ok(changed[0].modseq > known.highestModseq, 'MODSEQ newer than the known one');
const unchanged = await again.fetchAll(
    '1:*',
    { uid: true, flags: true },
    { uid: true, changedSince: reopened.highestModseq }
);
assert.deepEqual(unchanged, [], 'nothing changed since the current HIGHESTMODSEQ');
passed('changedsince');

step = 'forwarded';
// A message forwarded as its whole body (Content-Type: message/rfc822): downloading part 1
// gives the forwarded message, header included.
const inner = 'Subject: the original\r\nFrom: carol@example.org\r\n\r\noriginal text\r\n';
const forwarded = await again.append(
    'Archive',
    Buffer.from(`From: alice@example.org\r\nSubject: Fwd: the original\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n${inner}`)
);
await again.mailboxOpen('Archive');
const structure = await again.fetchOne(String(forwarded.uid), { bodyStructure: true }, { uid: true });
assert.equal(structure.bodyStructure.type, 'message/rfc822');
assert.equal(structure.bodyStructure.envelope.subject, 'the original');
const part = await again.download(String(forwarded.uid), '1', { uid: true });
let partText = '';
for await (const chunk of part.content) {
    partText += chunk.toString();
}
assert.equal(partText, inner);
passed('forwarded');

step = 'logout';
await again.logout();
await other.logout();
await main.logout();
clearTimeout(watchdog);
passed('logout');
