//! Store benchmarks; prints figures, asserts nothing. Run: `cargo bench -p sealmail-core --bench store`.
//!
//! (a) open + first query with the raw key vs SQLCipher's passphrase KDF,
//! (b) append throughput of realistic 4-50 KB MIME messages, encrypted vs the same schema on
//!     plain SQLite, 1 and 100 messages per transaction,
//! (c) FTS5 trigram substring search over 20,000 messages.

use sealmail_core::MailboxKey;
use sealmail_core::store::{AppendOptions, Mailbox, SearchKey};
use std::path::Path;
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "meeting", "project", "invoice", "schedule", "report", "quarter", "budget", "review", "team",
    "launch", "customer", "server", "release", "update", "question", "thanks", "please",
    "attached", "tomorrow", "deadline", "design", "contract", "travel", "lunch", "weekend",
    "numbers", "draft", "feedback", "agenda", "minutes", "the", "and", "for", "with", "this",
    "that", "from", "about",
];

/// xorshift: deterministic, dependency-free pseudo-randomness for synthetic mail.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A realistic message of 4-50 KB: text body of words, and for about a third of them a base64
/// attachment of random bytes.
fn realistic_message(rng: &mut Rng, index: usize, extra_word: Option<&str>) -> Vec<u8> {
    let target = 4_000 + rng.below(46_000) as usize;
    let with_attachment = rng.below(3) == 0;
    let text_len = if with_attachment { target / 3 } else { target };
    let mut text = String::with_capacity(text_len + 100);
    let mut line = 0;
    while text.len() < text_len {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        text.push_str(word);
        line += word.len() + 1;
        if line > 70 {
            text.push_str("\r\n");
            line = 0;
        } else {
            text.push(' ');
        }
    }
    if let Some(word) = extra_word {
        text.push_str(word);
        text.push_str("\r\n");
    }
    let subject = format!(
        "{} {} #{index}",
        WORDS[rng.below(30) as usize],
        WORDS[rng.below(30) as usize]
    );
    let mut raw = format!(
        "From: Sender {a} <sender{a}@example.org>\r\nTo: rcpt@example.net\r\nSubject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 10:{m:02}:00 +0000\r\nMessage-ID: <{index}.{r}@example.org>\r\n\
         MIME-Version: 1.0\r\n",
        a = rng.below(500),
        m = index % 60,
        r = rng.next()
    );
    if with_attachment {
        let binary: Vec<u8> = (0..(target - text_len) * 3 / 4)
            .map(|_| rng.next() as u8)
            .collect();
        raw.push_str("Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n--xyz\r\n");
        raw.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        raw.push_str(&text);
        raw.push_str("\r\n--xyz\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\n");
        raw.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        raw.push_str(&base64(&binary));
        raw.push_str("--xyz--\r\n");
    } else {
        raw.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        raw.push_str(&text);
    }
    raw.into_bytes()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (j, &b)| acc | (b as u32) << (16 - 8 * j));
        for k in 0..4 {
            out.push(if k <= chunk.len() {
                A[(n >> (18 - 6 * k) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn append_rate(mailbox: &mut Mailbox, messages: &[Vec<u8>], batch: usize) -> (f64, f64) {
    let start = Instant::now();
    for chunk in messages.chunks(batch) {
        if batch == 1 {
            mailbox
                .append("INBOX", &chunk[0], &AppendOptions::default())
                .unwrap();
        } else {
            let items: Vec<(&[u8], AppendOptions)> = chunk
                .iter()
                .map(|m| (m.as_slice(), AppendOptions::default()))
                .collect();
            mailbox.append_many("INBOX", &items).unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes: usize = messages.iter().map(Vec::len).sum();
    (messages.len() as f64 / secs, bytes as f64 / secs / 1e6)
}

fn bench_open(dir: &Path) {
    let key = MailboxKey::generate();
    let path = dir.join("open.sqlite");
    drop(Mailbox::create(&path, &key).unwrap());
    let raw: Vec<Duration> = (0..101)
        .map(|_| {
            let start = Instant::now();
            let mailbox = Mailbox::open(&path, &key).unwrap();
            mailbox.folder("INBOX").unwrap();
            start.elapsed()
        })
        .collect();

    // Baseline: SQLCipher's own passphrase KDF (PBKDF2-HMAC-SHA512, 256,000 iterations).
    let kdf_path = dir.join("kdf.sqlite");
    let conn = rusqlite::Connection::open(&kdf_path).unwrap();
    conn.execute_batch("PRAGMA key = 'correct horse battery staple'; CREATE TABLE t(x);")
        .unwrap();
    drop(conn);
    let kdf: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let conn = rusqlite::Connection::open(&kdf_path).unwrap();
            conn.execute_batch("PRAGMA key = 'correct horse battery staple';")
                .unwrap();
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .unwrap();
            start.elapsed()
        })
        .collect();
    let (raw, kdf) = (median(raw), median(kdf));
    println!(
        "(a) open + first query: raw key {:.3} ms, passphrase KDF {:.1} ms (raw key is {:.0}x faster)",
        raw.as_secs_f64() * 1e3,
        kdf.as_secs_f64() * 1e3,
        kdf.as_secs_f64() / raw.as_secs_f64()
    );
}

fn bench_append(dir: &Path) {
    let mut rng = Rng(0x5eed);
    let messages: Vec<Vec<u8>> = (0..1000)
        .map(|i| realistic_message(&mut rng, i, None))
        .collect();
    let avg_kb = messages.iter().map(Vec::len).sum::<usize>() as f64 / messages.len() as f64 / 1e3;
    println!(
        "(b) append of {} messages, average {avg_kb:.1} KB:",
        messages.len()
    );
    for batch in [1, 100] {
        let key = MailboxKey::generate();
        let mut encrypted = Mailbox::create(&dir.join(format!("enc{batch}.sqlite")), &key).unwrap();
        let mut plain =
            Mailbox::create_plaintext_for_benchmark(&dir.join(format!("plain{batch}.sqlite")))
                .unwrap();
        // Alternate runs so machine noise hits both alike; keep the best of two each.
        let half = messages.len() / 2;
        let p1 = append_rate(&mut plain, &messages[..half], batch);
        let e1 = append_rate(&mut encrypted, &messages[..half], batch);
        let e2 = append_rate(&mut encrypted, &messages[half..], batch);
        let p2 = append_rate(&mut plain, &messages[half..], batch);
        let (enc, pla) = (
            if e1.0 > e2.0 { e1 } else { e2 },
            if p1.0 > p2.0 { p1 } else { p2 },
        );
        println!(
            "    {batch:>3} per transaction: encrypted {:.0} msg/s ({:.1} MB/s), plain SQLite {:.0} msg/s ({:.1} MB/s), ratio {:.2}",
            enc.0,
            enc.1,
            pla.0,
            pla.1,
            enc.0 / pla.0
        );
    }
}

fn bench_search(dir: &Path) {
    let key = MailboxKey::generate();
    let mut mailbox = Mailbox::create(&dir.join("search.sqlite"), &key).unwrap();
    let mut rng = Rng(0xfeed);
    let total = 20_000;
    let start = Instant::now();
    for chunk_start in (0..total).step_by(500) {
        let chunk: Vec<Vec<u8>> = (chunk_start..chunk_start + 500)
            .map(|i| realistic_message(&mut rng, i, (i == 12_345).then_some("xylophonist")))
            .collect();
        let items: Vec<(&[u8], AppendOptions)> = chunk
            .iter()
            .map(|m| (m.as_slice(), AppendOptions::default()))
            .collect();
        mailbox.append_many("INBOX", &items).unwrap();
    }
    println!(
        "(c) filled {total} messages in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for (label, key) in [
        (
            "rare word in body (TEXT xylophonist)",
            SearchKey::Text("xylophonist".into()),
        ),
        ("rare word, BODY key", SearchKey::Body("xylophonist".into())),
        (
            "subject substring (SUBJECT \"#12345\")",
            SearchKey::Subject("#12345".into()),
        ),
        ("unseen (flag index)", SearchKey::Seen(false)),
    ] {
        let mut hits = 0;
        let samples: Vec<Duration> = (0..21)
            .map(|_| {
                let t = Instant::now();
                hits = mailbox.search("INBOX", &key).unwrap().len();
                t.elapsed()
            })
            .collect();
        println!(
            "    {label}: {:.2} ms median, {hits} hits",
            median(samples).as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    bench_open(dir.path());
    bench_append(dir.path());
    bench_search(dir.path());
}
