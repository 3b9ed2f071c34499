//! IMAP load generator: N concurrent clients, each repeating
//! LOGIN, SELECT, (APPEND, UID FETCH, UID STORE, UID EXPUNGE) x ops, LOGOUT,
//! and a report of commands/s and p50/p99 latency per command.
//!
//! Against an embedded sealmail (fresh registry in a temp dir, real Argon2id cost):
//!     cargo run --release -p sealmail-imap --example loadgen -- --clients 16 --cycles 20
//! Against any server (e.g. Dovecot) with users `user0..userN` sharing one password:
//!     cargo run --release -p sealmail-imap --example loadgen -- --addr 127.0.0.1:10143 \
//!         --user-format 'user{}' --password pw

use sealmail_core::mailstore::LocalMailStore;
use sealmail_core::registry::{AccountOptions, Registry, RegistryOptions};
use sealmail_imap::server::{self, ServerConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
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
            other => panic!("unknown option {other}"),
        }
    }
    options
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

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
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

/// Open `count` connections that stay idle, and report the growth of RSS per connection. With
/// the embedded server this includes the client side of each socket (a few hundred bytes).
async fn idle_connections(addr: SocketAddr, count: usize, options: &Options) {
    let before = rss_kib();
    let mut clients = Vec::with_capacity(count);
    let mut samples = Samples::new();
    for i in 0..count {
        let mut client = Client::connect(addr).await.expect("connect");
        if options.idle_login {
            let user = options
                .user_format
                .replace("{}", &(i % options.clients).to_string());
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
        }
        clients.push(client);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "{count} idle connections{}: RSS {before} KiB -> {after} KiB = {:.1} KiB per connection",
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

#[tokio::main]
async fn main() {
    let options = parse_args();
    let mut _embedded = None;
    let addr = match options.addr {
        Some(addr) => addr,
        None => {
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
                        &options.user_format.replace("{}", &i.to_string()),
                        Some(&options.password),
                        &AccountOptions::default(),
                    )
                    .unwrap();
            }
            eprintln!(
                "created {} accounts in {:?}",
                options.clients,
                started.elapsed()
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let store = Arc::new(LocalMailStore::new(registry));
            let config = ServerConfig {
                max_connections_per_ip: 10_000,
                ..ServerConfig::default()
            };
            tokio::spawn(server::run(
                listener,
                store,
                config,
                std::future::pending::<()>(),
            ));
            _embedded = Some(dir);
            addr
        }
    };
    if let Some(count) = options.idle {
        idle_connections(addr, count, &options).await;
        return;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..options.clients {
        let user = options.user_format.replace("{}", &i.to_string());
        tasks.push(tokio::spawn(client_loop(
            addr,
            user,
            options.password.clone(),
            options.cycles,
            options.ops,
        )));
    }
    let mut all = Samples::new();
    for task in tasks {
        for (name, mut durations) in task.await.unwrap().expect("client ran") {
            all.entry(name).or_default().append(&mut durations);
        }
    }
    let elapsed = started.elapsed();
    let total: usize = all.values().map(Vec::len).sum();
    println!(
        "{} clients x {} cycles x {} ops against {addr}: {total} commands in {:.2} s = {:.0} commands/s",
        options.clients,
        options.cycles,
        options.ops,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let mut everything: Vec<Duration> = all.values().flatten().copied().collect();
    everything.sort_unstable();
    println!(
        "{:<8} {:>7} {:>10} {:>10}",
        "command", "count", "p50 ms", "p99 ms"
    );
    for (name, durations) in all.iter_mut() {
        durations.sort_unstable();
        println!(
            "{:<8} {:>7} {:>10.3} {:>10.3}",
            name,
            durations.len(),
            percentile(durations, 0.5).as_secs_f64() * 1e3,
            percentile(durations, 0.99).as_secs_f64() * 1e3
        );
    }
    println!(
        "{:<8} {:>7} {:>10.3} {:>10.3}",
        "all",
        everything.len(),
        percentile(&everything, 0.5).as_secs_f64() * 1e3,
        percentile(&everything, 0.99).as_secs_f64() * 1e3
    );
}
