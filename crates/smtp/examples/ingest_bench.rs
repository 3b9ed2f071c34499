//! SMTP ingest benchmark (issue #6, "Benchmarks"): realistic 4–50 KB messages over pipelined
//! connections into sealmail's MX listener, once for offline recipients (each message sealed
//! into the queue) and once for online ones (a session holds each mailbox open: the direct
//! path, with the server's background indexer on its schedule), and the same messages into
//! Dovecot's LMTP (Maildir, its own config on a free 127.0.0.1 port) in the same run. Prints
//! messages/s for each and the ratios to Dovecot, and the CPU time each used per message,
//! which machine noise (other work on the cores) moves far less than the rate. The client
//! runs in this process for every run: a sealmail figure is this process's CPU (client and
//! server), Dovecot's is this process's CPU (the client) plus that of Dovecot's processes.
//!
//! ```text
//! cargo run --release -p sealmail-smtp --example ingest_bench -- \
//!     [--count 10000] [--connections 8] [--recipients 16] [--dir /tmp] \
//!     [--dovecot /usr/sbin/dovecot | --no-dovecot] [--no-sealed] [--no-direct]
//! ```
//!
//! `--no-sealed` and `--no-direct` leave out the offline or the online run (to profile one path
//! alone).
//!
//! Leave a few minutes between runs on ext4 without a journal (this machine's root file
//! system): its inode allocator passes over inodes freed in the last 1-5 minutes, one inode-table
//! read each, so right after a run removed its 20,000+ files every file created (a sealed
//! item, a Maildir file) scans past them; `perf` then shows `find_inode_bit` and
//! `recently_deleted` as the sealed path's largest cost.
//!
//! Every acknowledgement in all three means the same: the message is on disk (fsynced). Inbound
//! SPF/DKIM/DMARC checks are off, as LMTP sits behind an MTA that already made them. Dovecot's
//! mail processes run as the `dovecot` user when this runs as root, else as the current user.
//! Not part of `cargo test`.

// Each benchmark uses part of the shared launcher.
#[allow(dead_code)]
#[path = "../../../bench/dovecot.rs"]
mod dovecot;

use dovecot::{Dovecot, MailUser};
use sealmail_core::mailstore::{IndexSchedule, LocalMailStore, MailSession, MailStore};
use sealmail_core::registry::{AccountOptions, KdfParams, Registry, RegistryOptions};
use sealmail_core::seal::SealedQueue;
use sealmail_smtp::LocalDelivery;
use sealmail_smtp::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PASSWORD: &str = "ingest bench password";
const DOMAIN: &str = "bench.test";

struct Options {
    count: usize,
    connections: usize,
    recipients: usize,
    dir: PathBuf,
    dovecot: Option<PathBuf>,
    sealed: bool,
    direct: bool,
}

fn options() -> Options {
    let mut options = Options {
        count: 10_000,
        connections: 8,
        recipients: 16,
        dir: std::env::temp_dir(),
        dovecot: Some("/usr/sbin/dovecot".into()),
        sealed: true,
        direct: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--count" => options.count = value().parse().expect("--count N"),
            "--connections" => options.connections = value().parse().expect("--connections N"),
            "--recipients" => options.recipients = value().parse().expect("--recipients N"),
            "--dir" => options.dir = value().into(),
            "--dovecot" => options.dovecot = Some(value().into()),
            "--no-dovecot" => options.dovecot = None,
            "--no-sealed" => options.sealed = false,
            "--no-direct" => options.direct = false,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(options.count > 0 && options.connections > 0 && options.recipients > 0);
    options
}

fn main() {
    let options = options();
    let messages = Arc::new(generate_messages(options.count));
    let total_bytes: usize = messages.iter().map(Vec::len).sum();
    println!(
        "{} messages, {:.1} MiB, average {:.1} KiB; {} connections, {} recipients per run",
        messages.len(),
        total_bytes as f64 / (1 << 20) as f64,
        total_bytes as f64 / messages.len() as f64 / 1024.0,
        options.connections,
        options.recipients,
    );
    let work = tempfile::tempdir_in(&options.dir).expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let (sealed, direct) = runtime.block_on(run_sealmail(
        &options,
        &work.path().join("sealmail"),
        &messages,
    ));
    let dovecot = options.dovecot.as_ref().map(|binary| {
        let dovecot = start_dovecot(binary, &work.path().join("dovecot"));
        let master = master_pid(&dovecot);
        let server_cpu_before = process_tree_cpu(master);
        let mut rate = runtime.block_on(ingest(
            Protocol::Lmtp,
            dovecot.addr,
            &options,
            &messages,
            |i| format!("bench{}@{DOMAIN}", i % options.recipients),
        ));
        let server_cpu = process_tree_cpu(master).saturating_sub(server_cpu_before);
        rate.cpu += server_cpu;
        let stored = delivered_by(&dovecot);
        assert_eq!(stored, messages.len(), "Dovecot stored every message");
        rate
    });

    let count = messages.len();
    println!();
    println!(
        "{:<34} {:>12} {:>14} {:>12} {:>14}",
        "SMTP ingest", "messages/s", "vs Dovecot", "CPU ms/msg", "CPU vs Dovecot"
    );
    let row = |name: &str, rate: &Rate| {
        let (speed, cpu) = match &dovecot {
            Some(baseline) => (
                format!("{:.2}x", rate.per_second / baseline.per_second),
                format!(
                    "{:.2}x",
                    rate.cpu.as_secs_f64() / baseline.cpu.as_secs_f64().max(f64::EPSILON)
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<34} {:>12.0} {speed:>14} {:>12.3} {cpu:>14}",
            rate.per_second,
            rate.cpu_ms_per_message(count),
        );
    };
    if let Some(sealed) = &sealed {
        row("sealmail MX, offline (sealed)", sealed);
    }
    if let Some((direct, direct_indexed)) = &direct {
        row("sealmail MX, online (direct)", direct);
        row("  the same, all of it indexed", direct_indexed);
    }
    if let Some(baseline) = &dovecot {
        row("Dovecot LMTP (Maildir)", baseline);
    }
}

/// One ingest run's throughput and the CPU time spent on it.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    /// CPU time (user and system, every thread) from the first command to the last reply.
    cpu: Duration,
}

impl Rate {
    fn cpu_ms_per_message(&self, count: usize) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / count as f64
    }
}

/// CPU time this process has used so far, on every thread.
fn process_cpu() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).expect("CPU time is positive"),
        u32::try_from(now.tv_nsec).expect("nanoseconds below one second"),
    )
}

/// Dovecot's master process id, once the master has written it (it may still be doing so
/// when the listener already accepts connections).
fn master_pid(dovecot: &Dovecot) -> u32 {
    let path = dovecot.base.join("run/master.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "dovecot wrote no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time used so far by process `root` and every process below it, alive or already
/// reaped (`/proc/<pid>/stat`: utime, stime and the children's cutime, cstime). A child that
/// ends between two readings moves from its own entry into its parent's children's time, so
/// the difference of two readings counts it once.
fn process_tree_cpu(root: u32) -> Duration {
    // (pid, parent, ticks)
    let mut processes: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let entry = entry.expect("/proc entry");
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // The process may have ended since the listing.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields start after the last ')'.
        let Some((_, fields)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = fields.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        // After the name: state, ppid, ..., utime (12th), stime, cutime, cstime.
        let (Some(parent), Some(ticks)) = (
            number(1),
            (11..15).map(number).try_fold(0u64, |sum, t| Some(sum + t?)),
        ) else {
            continue;
        };
        processes.push((pid, u32::try_from(parent).unwrap_or(0), ticks));
    }
    let mut in_tree = vec![root];
    let mut ticks = 0;
    // Parents are found before their children only by chance: sweep until nothing is added.
    loop {
        let before = in_tree.len();
        for (pid, parent, _) in &processes {
            if !in_tree.contains(pid) && in_tree.contains(parent) {
                in_tree.push(*pid);
            }
        }
        if in_tree.len() == before {
            break;
        }
    }
    for (pid, _, process_ticks) in &processes {
        if in_tree.contains(pid) {
            ticks += process_ticks;
        }
    }
    Duration::from_secs_f64(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Both sealmail runs on one server: offline recipients first, then online ones.
async fn run_sealmail(
    options: &Options,
    data_dir: &Path,
    messages: &Arc<Vec<Vec<u8>>>,
) -> (Option<Rate>, Option<(Rate, Rate)>) {
    std::fs::create_dir_all(data_dir).unwrap();
    let kdf = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let registry = Arc::new(
        Registry::open_with(
            data_dir,
            RegistryOptions {
                create_if_missing: true,
                unknown_address_kdf: kdf,
                ..RegistryOptions::default()
            },
        )
        .unwrap(),
    );
    let account_options = AccountOptions {
        quota: None,
        with_recovery_code: false,
        kdf,
    };
    for i in 0..options.recipients {
        for kind in ["offline", "online"] {
            registry
                .add_account(
                    &format!("{kind}{i}@{DOMAIN}"),
                    Some(PASSWORD),
                    &account_options,
                )
                .unwrap();
        }
    }
    let store = Arc::new(LocalMailStore::new(Arc::clone(&registry)));
    let delivery = Arc::new(LocalDelivery::new(
        Arc::clone(&registry),
        Arc::clone(&store),
    ));
    let mut config = ServerConfig::default();
    config.session.hostname = "mx.bench.test".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(listener, delivery, config, async move {
        let _ = stopped.await;
    }));

    let recipients = options.recipients;
    let sealed = if options.sealed {
        let sealed = ingest(Protocol::Smtp, addr, options, messages, |i| {
            format!("offline{}@{DOMAIN}", i % recipients)
        })
        .await;
        let queue = SealedQueue::new(data_dir);
        let mut queued = 0;
        for i in 0..recipients {
            let account = registry
                .lookup(&format!("offline{i}@{DOMAIN}"))
                .unwrap()
                .unwrap();
            queued += queue.pending_count(account.mailbox_id.as_str()).unwrap();
        }
        assert_eq!(queued, messages.len(), "every offline message sealed");
        Some(sealed)
    } else {
        None
    };
    if !options.direct {
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        return (sealed, None);
    }

    let mut sessions = Vec::new();
    for i in 0..recipients {
        sessions.push(
            store
                .login(&format!("online{i}@{DOMAIN}"), PASSWORD)
                .await
                .unwrap(),
        );
    }
    // `sealmail serve` indexes open mailboxes in the background every 2 s on its schedule; the
    // same runs here during the direct run, so its CPU counts as it would in the server.
    let (stop_indexing, mut indexing_stopped) = tokio::sync::watch::channel(false);
    let background_store = Arc::clone(&store);
    let background_indexing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut indexed = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = indexing_stopped.changed() => break indexed,
            }
            let store = Arc::clone(&background_store);
            indexed += tokio::task::spawn_blocking(move || {
                store.index_open_mailboxes(&IndexSchedule::BACKGROUND)
            })
            .await
            .unwrap()
            .unwrap();
        }
    });
    let direct = ingest(Protocol::Smtp, addr, options, messages, |i| {
        format!("online{}@{DOMAIN}", i % recipients)
    })
    .await;
    stop_indexing.send(true).unwrap();
    let indexed_during_run = background_indexing.await.unwrap();
    println!(
        "direct run: the background indexer took {indexed_during_run} of {} bodies while mail \
         arrived",
        messages.len()
    );
    // Appends leave their text to the full-text index in batches (the server indexes open
    // mailboxes every 2 s); the second figure adds the time to index what is still waiting,
    // so it counts indexing every message. Dovecot's LMTP here indexes nothing.
    let indexing_started = Instant::now();
    let indexing_cpu_before = process_cpu();
    let indexing_store = Arc::clone(&store);
    tokio::task::spawn_blocking(move || indexing_store.index_open_mailboxes(&IndexSchedule::NOW))
        .await
        .unwrap()
        .unwrap();
    let count = messages.len() as f64;
    let direct_indexed = Rate {
        per_second: count / (count / direct.per_second + indexing_started.elapsed().as_secs_f64()),
        cpu: direct.cpu + process_cpu().saturating_sub(indexing_cpu_before),
    };
    let mut stored = 0;
    for session in &sessions {
        stored += session.message_states("INBOX").await.unwrap().len();
    }
    assert_eq!(
        stored,
        messages.len(),
        "every online message in its mailbox"
    );
    let queue = SealedQueue::new(data_dir);
    for i in 0..recipients {
        let account = registry
            .lookup(&format!("online{i}@{DOMAIN}"))
            .unwrap()
            .unwrap();
        assert_eq!(queue.pending_count(account.mailbox_id.as_str()).unwrap(), 0);
    }
    drop(sessions);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    (sealed, Some((direct, direct_indexed)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Smtp,
    Lmtp,
}

/// Send every message over `options.connections` connections, each pipelining MAIL, RCPT
/// and DATA; returns messages per second and this process's CPU time, both from the first
/// command to the last reply.
async fn ingest(
    protocol: Protocol,
    addr: SocketAddr,
    options: &Options,
    messages: &Arc<Vec<Vec<u8>>>,
    recipient: impl Fn(usize) -> String,
) -> Rate {
    let recipients: Arc<Vec<String>> = Arc::new((0..messages.len()).map(&recipient).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::new();
    for _ in 0..options.connections {
        connections.push(Connection::open(protocol, addr).await);
    }
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        let (messages, recipients, next) = (
            Arc::clone(messages),
            Arc::clone(&recipients),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages.len() {
                    break;
                }
                connection.send(&recipients[i], &messages[i]).await;
            }
            connection.quit().await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    Rate {
        per_second: messages.len() as f64 / started.elapsed().as_secs_f64(),
        cpu: process_cpu().saturating_sub(cpu_before),
    }
}

/// One client connection, greeted and past EHLO/LHLO.
struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
    protocol: Protocol,
}

impl Connection {
    async fn open(protocol: Protocol, addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        let mut connection = Connection {
            reader: BufReader::new(read),
            writer,
            line: String::new(),
            protocol,
        };
        connection.expect("220").await;
        let hello = match protocol {
            Protocol::Smtp => "EHLO client.bench.test\r\n",
            Protocol::Lmtp => "LHLO client.bench.test\r\n",
        };
        connection.writer.write_all(hello.as_bytes()).await.unwrap();
        connection.expect("250").await;
        connection
    }

    /// One transaction: MAIL, RCPT and DATA in one write, then the message.
    async fn send(&mut self, recipient: &str, message: &[u8]) {
        // Dovecot's LMTP takes no SIZE parameter.
        let size = match self.protocol {
            Protocol::Smtp => format!(" SIZE={}", message.len()),
            Protocol::Lmtp => String::new(),
        };
        let commands =
            format!("MAIL FROM:<sender@remote.test>{size}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n");
        self.writer.write_all(commands.as_bytes()).await.unwrap();
        self.expect("250").await;
        self.expect("250").await;
        self.expect("354").await;
        self.writer.write_all(message).await.unwrap();
        self.writer.write_all(b".\r\n").await.unwrap();
        // LMTP answers once per recipient: one here, as for SMTP.
        self.expect("250").await;
    }

    async fn quit(mut self) {
        self.writer.write_all(b"QUIT\r\n").await.unwrap();
        self.expect("221").await;
    }

    /// Read one (possibly multi-line) reply and check its code.
    async fn expect(&mut self, code: &str) {
        loop {
            self.line.clear();
            let n = self.reader.read_line(&mut self.line).await.unwrap();
            assert!(n > 0, "connection closed while waiting for {code}");
            assert!(
                self.line.starts_with(code),
                "expected {code}, got {}",
                self.line.trim_end()
            );
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return;
            }
        }
    }
}

/// `count` messages of 4–50 KB as a mail client writes them: plain text, some HTML
/// alternatives, some with a base64 attachment; CRLF lines, none starting with a dot, so they
/// go on the wire as they are.
fn generate_messages(count: usize) -> Vec<Vec<u8>> {
    const WORDS: &[&str] = &[
        "the",
        "quarterly",
        "report",
        "meeting",
        "agenda",
        "please",
        "review",
        "attached",
        "schedule",
        "project",
        "deadline",
        "update",
        "budget",
        "thanks",
        "regards",
        "team",
        "customer",
        "feedback",
        "release",
        "notes",
        "invoice",
        "shipment",
        "tomorrow",
        "call",
        "draft",
        "proposal",
        "weekly",
        "summary",
        "question",
        "answer",
        "server",
        "backup",
    ];
    let mut random = Lcg(0x5ea1_5ea1);
    (0..count)
        .map(|i| {
            let target = 4096 + random.below(46 * 1024);
            let mut text = String::new();
            while text.len() < target {
                let mut line = String::new();
                while line.len() < 68 {
                    line.push_str(WORDS[random.below(WORDS.len())]);
                    line.push(' ');
                }
                text.push_str(line.trim_end());
                text.push_str("\r\n");
            }
            let subject: Vec<&str> = (0..5).map(|_| WORDS[random.below(WORDS.len())]).collect();
            let mut message = format!(
                "From: Sender {i} <sender{i}@remote.test>\r\n\
                 To: recipient@{DOMAIN}\r\n\
                 Subject: {} #{i}\r\n\
                 Date: Sun, 29 Nov 2026 03:{:02}:{:02} +0000\r\n\
                 Message-ID: <bench.{i}@remote.test>\r\n\
                 MIME-Version: 1.0\r\n",
                subject.join(" "),
                i / 60 % 60,
                i % 60,
            );
            match i % 3 {
                0 => {
                    message.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
                    message.push_str(&text);
                }
                1 => {
                    message.push_str(
                        "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
                         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
                    );
                    let half = text.len() / 2;
                    let cut = text[..half].rfind("\r\n").map_or(half, |p| p + 2);
                    message.push_str(&text[..cut]);
                    message.push_str("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>\r\n");
                    message.push_str(&text[..cut]);
                    message.push_str("</p></body></html>\r\n--alt--\r\n");
                }
                _ => {
                    message.push_str(
                        "Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
                         --mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
                    );
                    let short = text.len().min(2048);
                    let cut = text[..short].rfind("\r\n").map_or(short, |p| p + 2);
                    message.push_str(&text[..cut]);
                    message.push_str(
                        "--mix\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
                         Content-Transfer-Encoding: base64\r\n\
                         Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n",
                    );
                    let mut encoded = 0;
                    const ALPHABET: &[u8] =
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                    while message.len() < target {
                        let line: String =
                            (0..76).map(|_| ALPHABET[random.below(64)] as char).collect();
                        message.push_str(&line);
                        message.push_str("\r\n");
                        encoded += 1;
                    }
                    debug_assert!(encoded > 0);
                    message.push_str("--mix--\r\n");
                }
            }
            message.into_bytes()
        })
        .collect()
}

/// A small deterministic generator: the same messages in every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

/// Dovecot serving LMTP on a free port, delivering into Maildirs under `base/mail`.
fn start_dovecot(binary: &Path, base: &Path) -> Dovecot {
    let user = MailUser::for_this_process();
    let port = Dovecot::free_port();
    let b = base.display();
    let mail_user = &user.name;
    let lmtp = format!(
        "protocols = lmtp
postmaster_address = postmaster@{DOMAIN}
mail_location = maildir:{b}/mail/%n/Maildir
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_user} home={b}/mail/%n allow_all_users=yes
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"
    );
    Dovecot::start(binary, base, &user, port, &lmtp)
}

/// Messages in Dovecot's Maildirs (LMTP delivers into `new/`).
fn delivered_by(dovecot: &Dovecot) -> usize {
    let mut count = 0;
    for user in std::fs::read_dir(dovecot.base.join("mail")).unwrap() {
        let maildir = user.unwrap().path().join("Maildir");
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
                count += entries.count();
            }
        }
    }
    count
}
