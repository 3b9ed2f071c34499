//! Large-mailbox benchmark (issue #5): one mailbox of N messages (default 100,000) in sealmail
//! and, with the same messages as a Maildir, in Dovecot (no FTS plugin), measured over IMAP by
//! the same client in the same run:
//!
//! - QRESYNC resync (`SELECT ... (QRESYNC (uidvalidity modseq))`) after another client changed
//!   1% of the messages (0.5% flagged, 0.5% expunged);
//! - `SORT (DATE) UTF-8 ALL`;
//! - `THREAD REFERENCES UTF-8 ALL`;
//! - `SEARCH TEXT <a word found in 5 messages>`.
//!
//! Each operation runs once untimed (both servers build caches on first use), then `--runs`
//! times; the table shows medians in milliseconds and sealmail's speed-up.
//!
//!     cargo run --release -p sealmail-imap --example big_mailbox -- \
//!         [--messages 100000] [--runs 7] [--dovecot /usr/sbin/dovecot | --no-dovecot]
//!
//! Dovecot runs with its own config on a free 127.0.0.1 port from a temp dir (as root it drops to
//! the `dovecot` user, which must exist). Not part of `cargo test`.

// Each benchmark uses part of the shared launcher.
#[allow(dead_code)]
#[path = "../../../bench/dovecot.rs"]
mod dovecot;

use dovecot::{Dovecot, MailUser};
use sealmail_core::account;
use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_core::store::{self, AppendOptions, SearchKey, ThreadAlgorithm, UidSet};
use sealmail_imap::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const ADDRESS: &str = "bench@example.org";
const PASSWORD: &str = "bench-password";
/// In `RARE_EVERY`-th messages only, so SEARCH TEXT finds a handful.
const RARE_WORD: &str = "quuxzebrine";
const RARE_EVERY: usize = 20_000;
/// Messages per append transaction while filling the mailbox.
const BATCH: usize = 5_000;

struct Options {
    messages: usize,
    runs: usize,
    dovecot: Option<PathBuf>,
    dir: Option<PathBuf>,
}

fn parse_args() -> Options {
    let mut options = Options {
        messages: 100_000,
        runs: 7,
        dovecot: Some("/usr/sbin/dovecot".into()),
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--messages" => options.messages = value().parse().expect("--messages N"),
            "--runs" => options.runs = value().parse().expect("--runs N"),
            "--dovecot" => options.dovecot = Some(value().into()),
            "--no-dovecot" => options.dovecot = None,
            "--dir" => options.dir = Some(value().into()),
            other => panic!("unknown option {other}"),
        }
    }
    options
}

#[tokio::main]
async fn main() {
    let options = parse_args();
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = options.dir.clone().unwrap_or_else(|| temp.path().into());
    std::fs::create_dir_all(&dir).unwrap();

    let started = Instant::now();
    let messages = generate(options.messages);
    let total: usize = messages.iter().map(Vec::len).sum();
    println!(
        "generated {} messages, {:.1} MB, in {:.1} s",
        messages.len(),
        total as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let registry = fill_sealmail(&dir.join("seal"), &messages);
    println!(
        "sealmail: stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    profile_thread(&registry, options.runs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seal_addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let store = Arc::new(LocalMailStore::new(registry));
    let seal_server = tokio::spawn(server::run(
        listener,
        store,
        ServerConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let dovecot = options.dovecot.as_ref().map(|binary| {
        let started = Instant::now();
        let running = start_dovecot(binary, &dir.join("dovecot"), &messages);
        println!(
            "dovecot: Maildir written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        running
    });
    drop(messages);

    let seal = measure("sealmail", seal_addr, ADDRESS, options.runs).await;
    let dove = match &dovecot {
        Some(running) => {
            let addr = running.addr;
            Some(measure("dovecot", addr, "bench", options.runs).await)
        }
        None => None,
    };

    println!(
        "\n{} messages, median of {} runs (first, untimed run excluded), milliseconds",
        options.messages, options.runs
    );
    println!(
        "{:<34} {:>10} {:>10} {:>9}",
        "operation", "sealmail", "dovecot", "speed-up"
    );
    for (i, (name, ms)) in seal.iter().enumerate() {
        match &dove {
            Some(d) => println!(
                "{name:<34} {ms:>10.1} {:>10.1} {:>8.1}x",
                d[i].1,
                d[i].1 / ms
            ),
            None => println!("{name:<34} {ms:>10.1} {:>10} {:>9}", "-", "-"),
        }
    }

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), seal_server).await;
    drop(dovecot);
}

/// The operations, timed against one server. Returns (name, median ms) in a fixed order.
async fn measure(label: &str, addr: SocketAddr, user: &str, runs: usize) -> Vec<(String, f64)> {
    let started = Instant::now();
    let mut reader = Client::login(addr, user).await;
    reader.run("ENABLE QRESYNC").await;
    let selected = reader.run("SELECT INBOX").await;
    let uidvalidity = code_number(&selected, "UIDVALIDITY");
    let modseq = code_number(&selected, "HIGHESTMODSEQ");
    let exists = selected
        .iter()
        .find_map(|l| l.strip_suffix(" EXISTS")?.strip_prefix("* ")?.parse().ok())
        .unwrap_or(0u32);
    reader.run("UNSELECT").await;
    println!(
        "{label}: first SELECT of {exists} messages after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Another client changes 1%: flags on every 200th message, expunges another 1 in 200.
    let mut writer = Client::login(addr, user).await;
    writer.run("SELECT INBOX").await;
    let flagged: Vec<String> = (1..=exists).step_by(200).map(|n| n.to_string()).collect();
    let deleted: Vec<String> = (101..=exists).step_by(200).map(|n| n.to_string()).collect();
    writer
        .run(&format!(
            "STORE {} +FLAGS.SILENT (\\Flagged)",
            flagged.join(",")
        ))
        .await;
    writer
        .run(&format!(
            "STORE {} +FLAGS.SILENT (\\Deleted)",
            deleted.join(",")
        ))
        .await;
    writer.run("EXPUNGE").await;
    writer.run("LOGOUT").await;

    let mut results = Vec::new();
    let resync = format!("SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))");
    let mut times = Vec::new();
    let mut answer_lines = 0;
    for run in 0..=runs {
        let start = Instant::now();
        let lines = reader.run(&resync).await;
        if run > 0 {
            times.push(start.elapsed());
        }
        answer_lines = lines.len();
        reader.run("UNSELECT").await;
    }
    println!("{label}: QRESYNC answer has {answer_lines} lines");
    results.push(("QRESYNC resync after 1% changes".to_string(), median(times)));

    reader.run("SELECT INBOX").await;
    for (name, command) in [
        ("SORT (DATE)", "SORT (DATE) UTF-8 ALL".to_string()),
        (
            "THREAD=REFERENCES",
            "THREAD REFERENCES UTF-8 ALL".to_string(),
        ),
        (
            "SEARCH TEXT (rare word)",
            format!("SEARCH TEXT {RARE_WORD}"),
        ),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for run in 0..=runs {
            let start = Instant::now();
            let lines = reader.run(&command).await;
            let elapsed = start.elapsed();
            if run == 0 {
                println!(
                    "{label}: {name} first run {:.1} ms",
                    elapsed.as_secs_f64() * 1e3
                );
            } else {
                times.push(elapsed);
            }
            size = lines.iter().map(String::len).sum::<usize>();
        }
        println!("{label}: {name} answer {size} bytes");
        results.push((name.to_string(), median(times)));
    }
    reader.run("LOGOUT").await;
    results
}

/// Where a THREAD=REFERENCES of the whole folder spends its time inside the store: reading
/// the rows, running the algorithm, both together, and a repeated call answered from the
/// mailbox's thread cache.
fn profile_thread(registry: &Registry, runs: usize) {
    let mut opened = account::open_mailbox(registry, ADDRESS, PASSWORD).expect("open");
    let mailbox = opened.mailbox_mut();
    let phase = |name: &str, work: &mut dyn FnMut() -> usize| {
        let mut times = Vec::new();
        let mut size = 0;
        for run in 0..=runs {
            let start = Instant::now();
            size = work();
            if run > 0 {
                times.push(start.elapsed());
            }
        }
        println!(
            "sealmail store: {name:<28} {:>8.1} ms median ({size} items)",
            median(times)
        );
    };
    phase("THREAD rows loaded", &mut || {
        let input = mailbox
            .thread_input("INBOX", &SearchKey::All)
            .expect("thread input");
        input.messages.len()
    });
    let input = mailbox
        .thread_input("INBOX", &SearchKey::All)
        .expect("thread input");
    phase("REFERENCES algorithm", &mut || {
        store::thread_references(&input).len()
    });
    phase("THREAD uncached (rows + algorithm)", &mut || {
        // A key that matches every message but is not "the whole folder" bypasses the cache.
        let everything = SearchKey::Not(Box::new(SearchKey::Uids(UidSet::from_uids([u32::MAX]))));
        mailbox
            .thread("INBOX", ThreadAlgorithm::References, &everything)
            .expect("thread")
            .len()
    });
    phase("THREAD whole folder (cached)", &mut || {
        mailbox
            .thread("INBOX", ThreadAlgorithm::References, &SearchKey::All)
            .expect("thread")
            .len()
    });
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

/// The number in an untagged `* OK [NAME number]` line.
fn code_number(lines: &[String], name: &str) -> u64 {
    let prefix = format!("[{name} ");
    lines
        .iter()
        .find_map(|l| {
            let rest = &l[l.find(&prefix)? + prefix.len()..];
            rest[..rest.find(']')?].parse().ok()
        })
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// A minimal IMAP client: one command at a time, literals inlined.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_tag: u32,
}

impl Client {
    async fn login(addr: SocketAddr, user: &str) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        // Commands are single small writes; never let Nagle hold one back.
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        let mut client = Client {
            reader: BufReader::with_capacity(1 << 16, read),
            writer: write,
            next_tag: 1,
        };
        let greeting = client.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        client.run(&format!("LOGIN {user} \"{PASSWORD}\"")).await;
        client
    }

    /// Send a command and return every line up to and including its tagged OK.
    async fn run(&mut self, command: &str) -> Vec<String> {
        let tag = format!("b{}", self.next_tag);
        self.next_tag += 1;
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "{command}: {line}");
                lines.push(line);
                return lines;
            }
            lines.push(line);
        }
    }

    async fn line(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).await.unwrap();
            assert!(n > 0, "connection closed after {out:?}");
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            out.push_str(text);
            let literal = text
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok());
            match literal {
                Some(size) => {
                    let mut data = vec![0u8; size];
                    self.reader.read_exact(&mut data).await.unwrap();
                    out.push_str(&String::from_utf8_lossy(&data));
                }
                None => return out,
            }
        }
    }
}

/// Store the messages in a fresh sealmail registry: one account, bulk-appended in large
/// transactions (the internal date of message i is i minutes after a fixed start).
fn fill_sealmail(dir: &Path, messages: &[Vec<u8>]) -> Registry {
    // The login cost is not what this measures.
    let kdf = KdfParams {
        m_cost_kib: 1024,
        t_cost: 1,
        p_cost: 1,
    };
    let registry = Registry::open_with(
        dir,
        RegistryOptions {
            create_if_missing: true,
            unknown_address_kdf: kdf,
            ..RegistryOptions::default()
        },
    )
    .expect("registry");
    registry
        .add_account(
            ADDRESS,
            Some(PASSWORD),
            &AccountOptions {
                quota: None,
                with_recovery_code: false,
                kdf,
            },
        )
        .expect("account");
    let mut opened = account::open_mailbox(&registry, ADDRESS, PASSWORD).expect("open");
    let mailbox = opened.mailbox_mut();
    for (chunk_index, chunk) in messages.chunks(BATCH).enumerate() {
        let batch: Vec<(&[u8], AppendOptions)> = chunk
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let n = (chunk_index * BATCH + i) as i64;
                (
                    raw.as_slice(),
                    AppendOptions {
                        internal_date: Some(START + n * 60),
                        ..AppendOptions::default()
                    },
                )
            })
            .collect();
        mailbox.append_many("INBOX", &batch).expect("append");
    }
    mailbox.checkpoint().expect("checkpoint");
    drop(opened);
    registry
}

/// 2015-01-01T00:00:00Z.
const START: i64 = 1_420_070_400;

/// Deterministic pseudo-random mail: threads of replies with References, senders from a pool,
/// Date headers that wander around the arrival order, bodies of common words.
fn generate(count: usize) -> Vec<Vec<u8>> {
    let mut rng = Lcg(0x5eed_1234_abcd_0042);
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sha", "dor", "bel", "fin", "gra",
        "hul", "jen", "kor", "lim", "mon", "nor",
    ];
    let words: Vec<String> = (0..600)
        .map(|_| {
            let parts = 2 + rng.below(3);
            (0..parts)
                .map(|_| syllables[rng.below(syllables.len())])
                .collect()
        })
        .collect();
    // Threads: (subject, message ids so far).
    let mut threads: Vec<(String, Vec<String>)> = Vec::new();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let reply = !threads.is_empty() && rng.below(100) < 60;
        let thread = if reply {
            // Mostly recent threads, like a real inbox.
            let recent = threads.len().min(400);
            threads.len() - 1 - rng.below(recent)
        } else {
            let subject = format!(
                "{} {} {}",
                words[rng.below(words.len())],
                words[rng.below(words.len())],
                i
            );
            threads.push((subject, Vec::new()));
            threads.len() - 1
        };
        let message_id = format!("m{i}.{}@bench.example.org", rng.below(1 << 30));
        let (subject, ids) = &threads[thread];
        let subject = if ids.is_empty() {
            subject.clone()
        } else {
            format!("Re: {subject}")
        };
        let references = ids
            .iter()
            .rev()
            .take(8)
            .rev()
            .map(|id| format!("<{id}>"))
            .collect::<Vec<_>>()
            .join(" ");
        let sent = START + i as i64 * 60 - rng.below(2 * 86_400) as i64;
        let sender = rng.below(2_000);
        let mut body = String::new();
        for line in 0..(3 + rng.below(8)) {
            for _ in 0..(6 + rng.below(8)) {
                body.push_str(&words[rng.below(words.len())]);
                body.push(' ');
            }
            if line == 1 && i % RARE_EVERY == 7 {
                body.push_str(RARE_WORD);
            }
            body.push_str("\r\n");
        }
        let mut raw = format!(
            "From: Sender {sender} <sender{sender}@example{}.org>\r\n\
             To: Bench <bench@example.org>\r\n\
             Subject: {subject}\r\n\
             Date: {}\r\n\
             Message-ID: <{message_id}>\r\n",
            sender % 7,
            rfc2822_date(sent),
        );
        if let Some(parent) = ids.last() {
            raw.push_str(&format!(
                "In-Reply-To: <{parent}>\r\nReferences: {references}\r\n"
            ));
        }
        raw.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        raw.push_str(&body);
        out.push(raw.into_bytes());
        threads[thread].1.push(message_id);
    }
    out
}

/// `Mon, 7 Feb 1994 21:52:25 +0000` for a Unix time.
fn rfc2822_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A small deterministic generator (no dependency needed for benchmark data).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Dovecot serving `messages` as the Maildir of user `bench` over IMAP on a free port.
fn start_dovecot(binary: &Path, base: &Path, messages: &[Vec<u8>]) -> Dovecot {
    let maildir = base.join("mail/bench/Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (i, raw) in messages.iter().enumerate() {
        let name = format!(
            "{}.M{i:07}P1.bench,S={}:2,",
            START + i as i64 * 60,
            raw.len()
        );
        std::fs::write(maildir.join("cur").join(name), raw).unwrap();
    }
    std::fs::write(base.join("passwd"), format!("bench:{{PLAIN}}{PASSWORD}\n")).unwrap();
    let user = MailUser::for_this_process();
    let port = Dovecot::free_port();
    Dovecot::start(
        binary,
        base,
        &user,
        port,
        &dovecot::imap_config(base, &user, port),
    )
}
