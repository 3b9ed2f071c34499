//! Page encryption cost through SQLCipher's OpenSSL provider and through this crate's, in the
//! same run, rounds alternating. Prints medians; asserts nothing.
//!
//! ```text
//! cargo run --release -p sealmail-sqlcipher-provider --example page_bench -- [--rounds 7] [--threads 1]
//! ```
//!
//! Each round and thread writes small transactions (an append-sized commit: ten rows of 2 KB,
//! which dirty a dozen pages) to its own file with sealmail's settings (raw key, 4 KiB pages,
//! HMAC-SHA256), then reads the whole file back through a fresh connection (every page
//! decrypted and verified). `--threads 2` runs that on two files at once, as two mailboxes
//! being written do.

use rusqlite::Connection;
use sealmail_sqlcipher_provider::{PROVIDER_NAME, install, testing};
use std::path::Path;
use std::time::Instant;

const KEY: &str =
    "PRAGMA key = \"x'2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c'\";
     PRAGMA cipher_page_size = 4096; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;";
const COMMITS: usize = 400;
const ROWS_PER_COMMIT: usize = 10;
const ROW_BYTES: usize = 2000;

struct Figures {
    write_secs: f64,
    read_secs: f64,
    pages: u64,
}

fn one_file(path: &Path, seed: u64) -> Figures {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(KEY).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB);
         CREATE INDEX t_body ON t (substr(body, 1, 16));",
    )
    .unwrap();
    let mut state = seed | 1;
    let mut row = vec![0u8; ROW_BYTES];
    let started = Instant::now();
    for _ in 0..COMMITS {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..ROWS_PER_COMMIT {
            for byte in row.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            tx.execute("INSERT INTO t (body) VALUES (?1)", [&row])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let write_secs = started.elapsed().as_secs_f64();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(KEY).unwrap();
    conn.execute_batch("PRAGMA cache_size = 0;").unwrap();
    let started = Instant::now();
    let total: i64 = conn
        .query_row("SELECT sum(length(body)) FROM t", [], |r| r.get(0))
        .unwrap();
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(total as usize, COMMITS * ROWS_PER_COMMIT * ROW_BYTES);
    Figures {
        write_secs,
        read_secs,
        pages,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut rounds = 7;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            "--threads" => threads = args.next().unwrap().parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    install().expect("the provider installs");
    let dir = tempfile::tempdir().unwrap();
    let providers = ["openssl", PROVIDER_NAME];
    let mut writes = [vec![], vec![]];
    let mut reads = [vec![], vec![]];
    let mut ratios = vec![];
    let mut pages = 0;
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut per_provider = [0.0; 2];
        for which in order {
            assert!(testing::make_default(providers[which]));
            let results: Vec<Figures> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let path = dir.path().join(format!("{round}-{which}-{t}.sqlite"));
                        scope.spawn(move || one_file(&path, (round * 31 + t + 7) as u64))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let write = results.iter().map(|f| f.write_secs).fold(0.0, f64::max);
            let read = results.iter().map(|f| f.read_secs).fold(0.0, f64::max);
            pages = results[0].pages;
            writes[which].push(write);
            reads[which].push(read);
            per_provider[which] = write;
        }
        ratios.push(per_provider[0] / per_provider[1]);
    }
    println!(
        "{threads} thread(s), {COMMITS} commits of {ROWS_PER_COMMIT} x {ROW_BYTES} B each, \
         {pages} pages per file, median of {rounds} rounds:"
    );
    for (which, name) in providers.iter().enumerate() {
        println!(
            "  {name:>10}: write {:.1} ms, read back {:.1} ms",
            median(writes[which].clone()) * 1e3,
            median(reads[which].clone()) * 1e3
        );
    }
    println!(
        "  write speed rustcrypto/openssl: median {:.2} ({})",
        median(ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
