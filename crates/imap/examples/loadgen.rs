//! IMAP load generator: N concurrent clients, each repeating
//! LOGIN, SELECT, (APPEND, UID FETCH, UID STORE, UID EXPUNGE) x ops, LOGOUT,
//! and a report of commands/s and p50/p99 latency per command.
//!
//! Against an embedded sealmail (fresh registry in a temp dir, real Argon2id cost, encrypted
//! mailboxes) and, side by side in the same run, Dovecot from Debian's packages (its own config
//! on a free 127.0.0.1 port, Maildir in a temp dir; as root it drops to the `dovecot` user):
//!     cargo run --release -p sealmail-imap --example loadgen -- --clients 16 --cycles 20 \
//!         --dovecot /usr/sbin/dovecot --rounds 3
//! Rounds alternate between the two servers; the ratio of each round is taken against the
//! Dovecot run of that same round and the median is reported, so a busy machine's noise hits
//! both alike. Each run also reports the CPU time the server spent (its process tree, from
//! `/proc`): commands per CPU second compares the servers' own work even while other processes
//! load the machine.
//! Against any running server with users `user0..userN` sharing one password:
//!     cargo run --release -p sealmail-imap --example loadgen -- --addr 127.0.0.1:10143 \
//!         --user-format 'user{}' --password pw
//! Memory of idle connections (embedded sealmail, 127.0.0.1; the report subtracts what the
//! same number of client sockets cost without a server behind them):
//!     cargo run --release -p sealmail-imap --example loadgen -- --idle 2000 [--idle-login]

// Each benchmark uses part of the shared launcher.
#[allow(dead_code)]
#[path = "../../../bench/dovecot.rs"]
mod dovecot;

use dovecot::{Dovecot, MailUser};
use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{AccountOptions, Registry, RegistryOptions};
use sealmail_imap::server::{self, ServerConfig};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Options {
    addr: Option<SocketAddr>,
    clients: usize,
    cycles: usize,
    ops: usize,
    user_format: String,
    password: String,
    /// Instead of the load: open this many idle connections and report RSS per connection.
    idle: Option<usize>,
    /// With `idle`: log each idle connection in and SELECT INBOX first.
    idle_login: bool,
    /// Run the same load against this Dovecot binary, side by side.
    dovecot: Option<PathBuf>,
    /// Alternating runs per server.
    rounds: usize,
    /// Internal: be the embedded sealmail server (a child process of the load generator).
    serve: bool,
}

fn parse_args() -> Options {
    let mut options = Options {
        addr: None,
        clients: 8,
        cycles: 10,
        ops: 10,
        user_format: "user{}@example.org".into(),
        password: "loadgen-password".into(),
        idle: None,
        idle_login: false,
        dovecot: None,
        rounds: 1,
        serve: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--addr" => options.addr = Some(value().parse().expect("--addr HOST:PORT")),
            "--clients" => options.clients = value().parse().expect("--clients N"),
            "--cycles" => options.cycles = value().parse().expect("--cycles N"),
            "--ops" => options.ops = value().parse().expect("--ops N"),
            "--user-format" => options.user_format = value(),
            "--password" => options.password = value(),
            "--idle" => options.idle = Some(value().parse().expect("--idle N")),
            "--idle-login" => options.idle_login = true,
            "--dovecot" => options.dovecot = Some(value().into()),
            "--rounds" => options.rounds = value().parse().expect("--rounds N"),
            "--serve" => options.serve = true,
            other => panic!("unknown option {other}"),
        }
    }
    assert!(options.rounds > 0, "--rounds must be at least 1");
    options
}

impl Options {
    fn user(&self, index: usize) -> String {
        self.user_format.replace("{}", &index.to_string())
    }
}

/// Latencies per command name.
type Samples = BTreeMap<&'static str, Vec<Duration>>;

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    next_tag: u64,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(reader),
            writer,
            next_tag: 0,
        };
        client.line().await?;
        Ok(client)
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut out = String::new();
        loop {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            out.push_str(text);
            match text
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                Some(n) => {
                    let mut literal = vec![0; n];
                    self.reader.read_exact(&mut literal).await?;
                }
                None => return Ok(out),
            }
        }
    }

    /// Run one command; returns the tagged line, panicking unless it is OK.
    async fn run(
        &mut self,
        name: &'static str,
        text: &str,
        samples: &mut Samples,
    ) -> std::io::Result<String> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        let started = Instant::now();
        self.writer
            .write_all(format!("{tag} {text}\r\n").as_bytes())
            .await?;
        let done = loop {
            let line = self.line().await?;
            if line.starts_with(&tag) {
                break line;
            }
        };
        samples.entry(name).or_default().push(started.elapsed());
        assert!(
            done.starts_with(&format!("{tag} OK")),
            "{name} failed: {done}"
        );
        Ok(done)
    }
}

const MESSAGE: &str = "From: Load <load@example.org>\r\nTo: user@example.org\r\n\
Subject: load test message\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <load@example.org>\r\n\r\nHello from the load generator.\r\n\
Some more text so the body is not trivially small.\r\n";

async fn client_loop(
    addr: SocketAddr,
    user: String,
    password: String,
    cycles: usize,
    ops: usize,
) -> std::io::Result<Samples> {
    let mut samples = Samples::new();
    for _ in 0..cycles {
        let mut c = Client::connect(addr).await?;
        c.run(
            "LOGIN",
            &format!("LOGIN {user} \"{password}\""),
            &mut samples,
        )
        .await?;
        c.run("SELECT", "SELECT INBOX", &mut samples).await?;
        for _ in 0..ops {
            let done = c
                .run(
                    "APPEND",
                    &format!("APPEND INBOX {{{}+}}\r\n{MESSAGE}", MESSAGE.len()),
                    &mut samples,
                )
                .await?;
            let uid = done
                .split("APPENDUID ")
                .nth(1)
                .and_then(|r| r.split([' ', ']']).nth(1))
                .expect("APPENDUID in APPEND reply")
                .to_string();
            c.run(
                "FETCH",
                &format!("UID FETCH {uid} (FLAGS BODY.PEEK[HEADER])"),
                &mut samples,
            )
            .await?;
            c.run(
                "STORE",
                &format!("UID STORE {uid} +FLAGS (\\Deleted)"),
                &mut samples,
            )
            .await?;
            c.run("EXPUNGE", &format!("UID EXPUNGE {uid}"), &mut samples)
                .await?;
        }
        c.run("LOGOUT", "LOGOUT", &mut samples).await?;
    }
    Ok(samples)
}

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) in seconds of process `root` and every process below it, children
/// it has already reaped included (Linux `/proc`): Dovecot forks a process per connection.
fn tree_cpu_seconds(root: u32) -> f64 {
    // (pid, parent pid, user + system ticks of itself and of its reaped children)
    let mut processes: Vec<(u32, u32, u64)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name (field 2) may hold spaces; the fields after it are plain numbers:
        // state, ppid, ... utime (14), stime, cutime, cstime (17).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 15 {
            continue;
        }
        let ppid = fields[1].parse().unwrap_or(0);
        let ticks = fields[11..15]
            .iter()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .sum();
        processes.push((pid, ppid, ticks));
    }
    let mut tree = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for &(pid, ppid, _) in &processes {
            if tree.contains(&ppid) && !tree.contains(&pid) {
                tree.push(pid);
                grew = true;
            }
        }
    }
    let ticks: u64 = processes
        .iter()
        .filter(|(pid, _, _)| tree.contains(pid))
        .map(|&(_, _, ticks)| ticks)
        .sum();
    ticks as f64 / USER_HZ
}

/// Resident set size of process `pid` in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Open `count` connections that stay idle, and report the growth of the server process's RSS
/// per connection (the server runs in its own process, so the clients' memory is not counted).
async fn idle_connections(addr: SocketAddr, server_pid: u32, count: usize, options: &Options) {
    let before = rss_kib(server_pid);
    let mut clients = Vec::with_capacity(count);
    let mut samples = Samples::new();
    for i in 0..count {
        let mut client = Client::connect(addr).await.expect("connect");
        if options.idle_login {
            let user = options.user(i % options.clients);
            client
                .run(
                    "LOGIN",
                    &format!("LOGIN {user} \"{}\"", options.password),
                    &mut samples,
                )
                .await
                .unwrap();
            client
                .run("SELECT", "SELECT INBOX", &mut samples)
                .await
                .unwrap();
        } else {
            // A round trip, so the server has set the connection up completely.
            client.run("NOOP", "NOOP", &mut samples).await.unwrap();
        }
        clients.push(client);
    }
    let after = rss_kib(server_pid);
    println!(
        "{count} idle connections{}: server RSS {before} KiB -> {after} KiB = {:.1} KiB per \
         connection",
        if options.idle_login {
            " (logged in, INBOX selected)"
        } else {
            ""
        },
        (after.saturating_sub(before)) as f64 / count as f64
    );
    drop(clients);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

/// The embedded sealmail server: accounts `user_format` 0..clients in a fresh registry in a
/// temp dir (real Argon2id cost, encrypted mailboxes), IMAP on a free 127.0.0.1 port. Prints
/// `listening ADDR` and serves until its standard input closes.
async fn serve_embedded(options: &Options) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open_with(
        dir.path(),
        RegistryOptions {
            create_if_missing: true,
            ..RegistryOptions::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    for i in 0..options.clients {
        registry
            .add_account(
                &options.user(i),
                Some(&options.password),
                &AccountOptions::default(),
            )
            .unwrap();
    }
    eprintln!(
        "sealmail: created {} accounts in {:.1} s",
        options.clients,
        started.elapsed().as_secs_f64()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let config = ServerConfig {
        max_connections_per_ip: 10_000,
        ..ServerConfig::default()
    };
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    };
    let store = Arc::new(LocalMailStore::new(registry));
    server::run(listener, store, config, stdin_closed)
        .await
        .unwrap();
}

/// The embedded server as a child process: its memory and CPU are its own, as Dovecot's are.
struct EmbeddedServer {
    child: Child,
    addr: SocketAddr,
}

impl EmbeddedServer {
    fn start(options: &Options) -> EmbeddedServer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", "--clients", &options.clients.to_string()])
            .args(["--user-format", &options.user_format])
            .args(["--password", &options.password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the embedded server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("embedded server did not start: {line:?}"));
        EmbeddedServer { child, addr }
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        // Closing its stdin is the shutdown signal.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Dovecot with a passwd-file of the load's users, IMAP on a free 127.0.0.1 port: the cheapest
/// login it offers (a plain password in a passwd-file).
fn start_dovecot(binary: &Path, base: &Path, options: &Options) -> Dovecot {
    std::fs::create_dir_all(base).unwrap();
    let passwd: String = (0..options.clients)
        .map(|i| format!("{}:{{PLAIN}}{}\n", options.user(i), options.password))
        .collect();
    std::fs::write(base.join("passwd"), passwd).unwrap();
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

/// Figures of one load run.
struct Run {
    commands_per_second: f64,
    /// Commands per second of CPU time the server's processes used during the run.
    commands_per_cpu_second: Option<f64>,
    samples: Samples,
}

/// Run the load against `addr`; `server` is the server's root process, whose CPU time is
/// measured when known.
async fn load(addr: SocketAddr, server: Option<u32>, options: &Options) -> Run {
    let cpu_before = server.map(tree_cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..options.clients {
        tasks.push(tokio::spawn(client_loop(
            addr,
            options.user(i),
            options.password.clone(),
            options.cycles,
            options.ops,
        )));
    }
    let mut samples = Samples::new();
    for task in tasks {
        for (name, mut durations) in task.await.unwrap().expect("client ran") {
            samples.entry(name).or_default().append(&mut durations);
        }
    }
    let elapsed = started.elapsed();
    let total: usize = samples.values().map(Vec::len).sum();
    let cpu = server
        .zip(cpu_before)
        .map(|(pid, before)| tree_cpu_seconds(pid) - before);
    Run {
        commands_per_second: total as f64 / elapsed.as_secs_f64(),
        commands_per_cpu_second: cpu.filter(|&c| c > 0.0).map(|c| total as f64 / c),
        samples,
    }
}

fn report(label: &str, run: &mut Run) {
    let total: usize = run.samples.values().map(Vec::len).sum();
    let per_cpu = run
        .commands_per_cpu_second
        .map(|c| format!(", {c:.0} commands per server CPU second"))
        .unwrap_or_default();
    println!(
        "{label}: {total} commands, {:.0} commands/s{per_cpu}",
        run.commands_per_second
    );
    let mut everything: Vec<Duration> = run.samples.values().flatten().copied().collect();
    everything.sort_unstable();
    println!(
        "    {:<8} {:>7} {:>10} {:>10}",
        "command", "count", "p50 ms", "p99 ms"
    );
    for (name, durations) in run.samples.iter_mut() {
        durations.sort_unstable();
        println!(
            "    {:<8} {:>7} {:>10.3} {:>10.3}",
            name,
            durations.len(),
            percentile(durations, 0.5).as_secs_f64() * 1e3,
            percentile(durations, 0.99).as_secs_f64() * 1e3
        );
    }
    println!(
        "    {:<8} {:>7} {:>10.3} {:>10.3}",
        "all",
        everything.len(),
        percentile(&everything, 0.5).as_secs_f64() * 1e3,
        percentile(&everything, 0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let options = parse_args();
    if options.serve {
        serve_embedded(&options).await;
        return;
    }
    println!(
        "{} clients x {} cycles x {} ops",
        options.clients, options.cycles, options.ops
    );
    if let Some(addr) = options.addr {
        for round in 1..=options.rounds {
            report(
                &format!("round {round}, {addr}"),
                &mut load(addr, None, &options).await,
            );
        }
        return;
    }
    let embedded = EmbeddedServer::start(&options);
    if let Some(count) = options.idle {
        idle_connections(embedded.addr, embedded.child.id(), count, &options).await;
        return;
    }
    let dovecot_dir = tempfile::tempdir().unwrap();
    let dovecot = options
        .dovecot
        .as_ref()
        .map(|binary| start_dovecot(binary, dovecot_dir.path(), &options));
    // One unreported cycle per client first: sealmail's first login per account pays Argon2id
    // (later ones hit the login cache), Dovecot's first session creates its Maildir.
    let warm_up = Options {
        cycles: 1,
        ops: 1,
        user_format: options.user_format.clone(),
        password: options.password.clone(),
        dovecot: None,
        ..options
    };
    let sealmail_pid = Some(embedded.child.id());
    load(embedded.addr, sealmail_pid, &warm_up).await;
    let dovecot_pid = dovecot.as_ref().map(Dovecot::master_pid);
    if let Some(dovecot) = &dovecot {
        load(dovecot.addr, dovecot_pid, &warm_up).await;
    }
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let mut sealmail_rates = Vec::new();
    for round in 1..=options.rounds {
        // Alternate which server goes first, so a trend in the machine's load hits both.
        let mut sealmail_first = round % 2 == 1;
        let mut pair = (None, None);
        for _ in 0..2 {
            if sealmail_first {
                let mut run = load(embedded.addr, sealmail_pid, &options).await;
                report(&format!("round {round}, sealmail"), &mut run);
                pair.0 = Some((run.commands_per_second, run.commands_per_cpu_second));
            } else if let Some(dovecot) = &dovecot {
                let mut run = load(dovecot.addr, dovecot_pid, &options).await;
                report(&format!("round {round}, dovecot"), &mut run);
                pair.1 = Some((run.commands_per_second, run.commands_per_cpu_second));
            }
            sealmail_first = !sealmail_first;
        }
        let (sealmail, sealmail_cpu) = pair.0.expect("sealmail ran");
        sealmail_rates.push(sealmail);
        if let Some((dovecot, dovecot_cpu)) = pair.1 {
            ratios.push(sealmail / dovecot);
            let cpu_ratio = sealmail_cpu.zip(dovecot_cpu).map(|(s, d)| s / d);
            cpu_ratios.extend(cpu_ratio);
            println!(
                "round {round}: sealmail/dovecot = {:.2} commands/s, {} commands per CPU second",
                sealmail / dovecot,
                cpu_ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
        }
    }
    println!(
        "sealmail: median {:.0} commands/s over {} rounds",
        median(sealmail_rates),
        options.rounds
    );
    if !ratios.is_empty() {
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "sealmail/dovecot commands/s: median {:.2} ({})",
            median(ratios),
            listed.join(" ")
        );
    }
    if !cpu_ratios.is_empty() {
        let listed: Vec<String> = cpu_ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "sealmail/dovecot commands per server CPU second: median {:.2} ({})",
            median(cpu_ratios),
            listed.join(" ")
        );
    }
}
