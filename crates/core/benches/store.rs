//! Store benchmarks; prints figures, asserts nothing. Run: `cargo bench -p sealmail-core --bench store`.
//!
//! (a) open + first query with the raw key vs SQLCipher's passphrase KDF,
//! (b) append throughput of realistic 4-50 KB MIME messages, encrypted vs the same schema on
//!     plain SQLite, 1 and 100 messages per transaction,
//! (c) FTS5 trigram substring search over 20,000 messages,
//! (z) zstd speed and ratio per level on what an append compresses: message skeletons and
//!     attachment bodies split as the store splits them, plus text files named in
//!     `SEALMAIL_BENCH_TEXT` and binary files (base64-encoded as mail carries them) in
//!     `SEALMAIL_BENCH_BINARY` (colon-separated paths). Not part of the default run.
//!
//! The machine these run on is shared: ratios are taken against a baseline measured in the
//! same run, rounds alternate, and medians are reported. `SEALMAIL_BENCH=b,c` picks parts;
//! `SEALMAIL_BENCH_ROUNDS`, `SEALMAIL_BENCH_MESSAGES`, `SEALMAIL_BENCH_BATCHES` (`1,100`) and
//! `SEALMAIL_BENCH_SEARCH_MESSAGES` size them. Append ratios are given in wall-clock time and
//! in CPU time of the appending thread, which the other processes of a busy machine do not
//! inflate.

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

fn median<T: PartialOrd + Copy>(mut samples: Vec<T>) -> T {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    samples[samples.len() / 2]
}

/// A setting from the environment, for shorter or longer runs on a noisy machine.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes on disk of a mailbox file and its WAL.
fn disk_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

/// CPU time this thread has run (Linux's scheduler statistics), which other processes on a
/// busy machine do not inflate as they do wall-clock time; `None` where unavailable.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Wall-clock and CPU seconds of appending `messages` in transactions of `batch`.
fn append_timed(mailbox: &mut Mailbox, messages: &[Vec<u8>], batch: usize) -> (f64, f64) {
    let (start, cpu_start) = (Instant::now(), thread_cpu());
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
    // The full-text index is written in batches (schema 8): what the appends left waiting is
    // indexed inside the timed run, so every figure includes indexing every message.
    mailbox.index_pending_in_batches(usize::MAX).unwrap();
    let cpu = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    (start.elapsed().as_secs_f64(), cpu)
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

/// Encrypted and plain files get the same messages in alternating order, each round on fresh
/// files; the ratio of each round is taken against the plain run of that same round, and the
/// median over rounds is reported, so the machine's noise (other builds on a shared machine)
/// hits both sides alike.
fn bench_append(dir: &Path) {
    let count = env_or("SEALMAIL_BENCH_MESSAGES", 1000usize);
    let rounds = env_or("SEALMAIL_BENCH_ROUNDS", 5usize);
    let mut rng = Rng(0x5eed);
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| realistic_message(&mut rng, i, None))
        .collect();
    let avg_kb = messages.iter().map(Vec::len).sum::<usize>() as f64 / messages.len() as f64 / 1e3;
    println!(
        "(b) append of {} messages, average {avg_kb:.1} KB, median of {rounds} rounds:",
        messages.len()
    );
    let megabytes = messages.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let batches: Vec<usize> = std::env::var("SEALMAIL_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,100".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    for batch in batches {
        let (mut wall_ratios, mut cpu_ratios) = (vec![], vec![]);
        let (mut enc_walls, mut plain_walls) = (vec![], vec![]);
        let (mut enc_disk, mut plain_disk) = (0, 0);
        for round in 0..rounds {
            let key = MailboxKey::generate();
            let enc_path = dir.join(format!("enc{batch}-{round}.sqlite"));
            let plain_path = dir.join(format!("plain{batch}-{round}.sqlite"));
            let mut encrypted = Mailbox::create(&enc_path, &key).unwrap();
            let mut plain = Mailbox::create_plaintext_for_benchmark(&plain_path).unwrap();
            let (enc, pla) = if round % 2 == 0 {
                let pla = append_timed(&mut plain, &messages, batch);
                (append_timed(&mut encrypted, &messages, batch), pla)
            } else {
                let enc = append_timed(&mut encrypted, &messages, batch);
                (enc, append_timed(&mut plain, &messages, batch))
            };
            // Throughput ratio: encrypted speed over plain speed, each round on its own.
            wall_ratios.push(pla.0 / enc.0);
            cpu_ratios.push(pla.1 / enc.1);
            enc_walls.push(enc.0);
            plain_walls.push(pla.0);
            (enc_disk, plain_disk) = (disk_bytes(&enc_path), disk_bytes(&plain_path));
            drop((encrypted, plain));
            for path in [&enc_path, &plain_path] {
                if std::env::var("KEEP").is_err() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let listed = |ratios: &[f64]| {
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (enc, pla) = (median(enc_walls), median(plain_walls));
        println!(
            "    {batch:>3} per transaction: encrypted {:.0} msg/s ({:.1} MB/s), plain SQLite \
             {:.0} msg/s ({:.1} MB/s) (medians, wall clock)",
            count as f64 / enc,
            megabytes / enc,
            count as f64 / pla,
            megabytes / pla,
        );
        println!(
            "        ratio encrypted/plain: wall clock median {:.2} ({}), CPU time median {:.2} \
             ({}); on disk {:.1} MB encrypted, {:.1} MB plain",
            median(wall_ratios.clone()),
            listed(&wall_ratios),
            median(cpu_ratios.clone()),
            listed(&cpu_ratios),
            enc_disk as f64 / 1e6,
            plain_disk as f64 / 1e6,
        );
    }
}

fn bench_search(dir: &Path) {
    let key = MailboxKey::generate();
    let path = dir.join("search.sqlite");
    let mut mailbox = Mailbox::create(&path, &key).unwrap();
    let mut rng = Rng(0xfeed);
    let total = env_or("SEALMAIL_BENCH_SEARCH_MESSAGES", 20_000usize);
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
        "(c) filled {total} messages in {:.1} s, {:.1} MB on disk",
        start.elapsed().as_secs_f64(),
        disk_bytes(&path) as f64 / 1e6
    );
    // A fresh connection (empty page cache, as for a client's first search after login).
    drop(mailbox);
    let mailbox = Mailbox::open(&path, &key).unwrap();
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
        let first = Instant::now();
        let mut hits = mailbox.search("INBOX", &key).unwrap().len();
        let first = first.elapsed();
        let samples: Vec<Duration> = (0..21)
            .map(|_| {
                let t = Instant::now();
                hits = mailbox.search("INBOX", &key).unwrap().len();
                t.elapsed()
            })
            .collect();
        println!(
            "    {label}: {:.2} ms median of 21 (first run {:.2} ms; the first key runs right after opening), {hits} hits",
            median(samples).as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // SEALMAIL_BENCH=b,c runs only some parts.
    let only = std::env::var("SEALMAIL_BENCH").unwrap_or_else(|_| "a,b,c".into());
    let wanted = |part: &str| only.split(',').any(|p| p.trim() == part);
    if wanted("a") {
        bench_open(dir.path());
    }
    if wanted("b") {
        if std::env::var("KEEP").is_ok() {
            std::fs::create_dir_all("/tmp/prof/keep").unwrap();
            bench_append(std::path::Path::new("/tmp/prof/keep"));
        } else {
            bench_append(dir.path());
        }
    }
    if wanted("c") {
        bench_search(dir.path());
    }
    if wanted("z") {
        bench_compression();
    }
}

/// Split `raw` as the store does: attachment bodies of at least 2 KiB apart, the rest (the
/// skeleton) in one piece.
fn split_like_store(raw: &[u8], skeletons: &mut Vec<Vec<u8>>, attachments: &mut Vec<Vec<u8>>) {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    let mut ranges: Vec<(usize, usize)> = message
        .attachments()
        .filter(|part| !part.is_multipart())
        .map(|part| (part.offset_body as usize, part.offset_end as usize))
        .filter(|&(start, end)| end >= start + 2048 && end <= raw.len())
        .collect();
    ranges.sort_unstable();
    let (mut skeleton, mut cursor) = (Vec::new(), 0);
    for (start, end) in ranges {
        skeleton.extend_from_slice(&raw[cursor..start]);
        attachments.push(raw[start..end].to_vec());
        cursor = end;
    }
    skeleton.extend_from_slice(&raw[cursor..]);
    skeletons.push(skeleton);
}

/// Files named in `var`, cut into pieces of 4-50 KB like message bodies; base64-encoded with
/// line breaks first when `as_attachment`.
fn file_samples(var: &str, as_attachment: bool, rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut samples = vec![];
    for path in std::env::var(var).unwrap_or_default().split(':') {
        if path.is_empty() {
            continue;
        }
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let bytes = if as_attachment {
            base64(&bytes).into_bytes()
        } else {
            bytes
        };
        let mut rest = &bytes[..];
        while rest.len() >= 4_000 {
            let take = (4_000 + rng.below(46_000) as usize).min(rest.len());
            samples.push(rest[..take].to_vec());
            rest = &rest[take..];
        }
    }
    samples
}

/// (z): per kind of content and per setting, compression speed in CPU time (median of rounds)
/// and stored size over raw size; also how long decompression takes.
fn bench_compression() {
    let count = env_or("SEALMAIL_BENCH_MESSAGES", 1000usize);
    let rounds = env_or("SEALMAIL_BENCH_ROUNDS", 5usize);
    let mut rng = Rng(0x5eed);
    let (mut skeletons, mut attachments) = (vec![], vec![]);
    for i in 0..count {
        let raw = realistic_message(&mut rng, i, None);
        split_like_store(&raw, &mut skeletons, &mut attachments);
    }
    let random_binary: Vec<Vec<u8>> = (0..count / 3)
        .map(|_| {
            let len = 4_000 + rng.below(30_000) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let kinds = [
        ("bench skeletons (word soup)", skeletons),
        ("bench attachments (base64 random)", attachments),
        ("raw random bytes (8bit/binary)", random_binary),
        (
            "SEALMAIL_BENCH_TEXT files",
            file_samples("SEALMAIL_BENCH_TEXT", false, &mut rng),
        ),
        (
            "SEALMAIL_BENCH_BINARY files, base64",
            file_samples("SEALMAIL_BENCH_BINARY", true, &mut rng),
        ),
    ];
    // Negative (fast) levels also turn off Huffman coding of literals, which is where base64
    // text, even of incompressible data, gets its 25% back.
    let levels = [3, 2, 1, -1, -3, -5];
    println!("(z) zstd per setting, CPU time of this thread, median of {rounds} rounds:");
    for (kind, samples) in kinds {
        if samples.is_empty() {
            continue;
        }
        let raw: usize = samples.iter().map(Vec::len).sum();
        println!(
            "  {kind}: {} pieces, {:.1} MB, average {:.1} KB",
            samples.len(),
            raw as f64 / 1e6,
            raw as f64 / samples.len() as f64 / 1e3
        );
        for level in levels {
            let mut compressor = zstd::bulk::Compressor::new(level).unwrap();
            let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
            let (mut compress_cpu, mut decompress_cpu, mut stored) = (vec![], vec![], 0);
            // The thread clock ticks coarsely: each round repeats the whole set until it has
            // run a quarter of a second, and takes the time per pass.
            let timed = |work: &mut dyn FnMut()| {
                let (start, mut passes) = (thread_cpu().unwrap(), 0);
                loop {
                    work();
                    passes += 1;
                    let spent = (thread_cpu().unwrap() - start).as_secs_f64();
                    if spent >= 0.25 {
                        return spent / passes as f64;
                    }
                }
            };
            for _ in 0..rounds {
                let mut frames: Vec<Vec<u8>> = vec![];
                compress_cpu.push(timed(&mut || {
                    frames = samples
                        .iter()
                        .map(|s| compressor.compress(s).unwrap())
                        .collect();
                }));
                stored = frames.iter().map(Vec::len).sum::<usize>();
                decompress_cpu.push(timed(&mut || {
                    for (frame, sample) in frames.iter().zip(&samples) {
                        let out = decompressor.decompress(frame, sample.len()).unwrap();
                        assert_eq!(out.len(), sample.len());
                    }
                }));
            }
            let (compress, decompress) = (median(compress_cpu), median(decompress_cpu));
            println!(
                "    level {level:>2} stored {:>5.1}% of raw, compress {:>6.0} MB/s ({:>5.1} us/piece), \
                 decompress {:>5.0} MB/s",
                stored as f64 * 100.0 / raw as f64,
                raw as f64 / compress / 1e6,
                compress * 1e6 / samples.len() as f64,
                raw as f64 / decompress / 1e6,
            );
        }
    }
}
