//! Sealing throughput: `cargo bench -p sealmail-core --bench seal`.
//!
//! Prints seal and open rates for 4 KB and 50 KB mail-like messages, the durable enqueue rate
//! (each item fsynced and its directory fsynced, as SMTP requires before answering 250) from one
//! and from eight threads, and the drain rate. The queue lives under `SEALMAIL_BENCH_DIR` (default: the system temp dir), so
//! point it at the disk the server will use: on tmpfs fsync costs nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sealmail_core::seal::{SealedQueue, SealingKeyPair, open, seal};

/// Each figure is measured for about this long, after a short warm-up.
const MEASURE_FOR: Duration = Duration::from_millis(1500);
/// Writers in the concurrent enqueue figure, like 8 pipelined SMTP connections.
const ENQUEUE_THREADS: usize = 8;
const MAILBOX: &str = "00112233445566778899aabb";

fn main() {
    let pair = SealingKeyPair::generate();
    println!(
        "sealmail seal benchmark (X25519 + ML-KEM-768, HKDF-SHA256, XChaCha20-Poly1305, zstd 3)"
    );

    let (keygen_rate, _) = measure(|| {
        black_box(SealingKeyPair::generate());
    });
    println!("key pair generation: {keygen_rate:>10.0} pairs/s");

    for size in [4 * 1024, 50 * 1024] {
        let message = mail_like_message(size);
        let sealed = seal(&pair.public, &message).expect("seal");
        println!(
            "{:>3} KB message: sealed item {} bytes ({:.0}% of plaintext)",
            size / 1024,
            sealed.len(),
            100.0 * sealed.len() as f64 / size as f64
        );

        let (rate, _) = measure(|| {
            black_box(seal(&pair.public, black_box(&message)).expect("seal"));
        });
        report("seal", size, rate);

        let (rate, _) = measure(|| {
            black_box(open(&pair.secret, black_box(&sealed)).expect("open"));
        });
        report("open", size, rate);

        let data_dir = bench_dir();
        let queue = SealedQueue::new(data_dir.path());
        let (rate, enqueued) = measure(|| {
            black_box(
                queue
                    .enqueue(MAILBOX, &pair.public, &message)
                    .expect("enqueue"),
            );
        });
        report("enqueue (fsync)", size, rate);

        // SMTP ingests over several connections at once; concurrent fsyncs share journal commits.
        let started = Instant::now();
        let per_thread = enqueued.div_ceil(ENQUEUE_THREADS).max(10);
        std::thread::scope(|scope| {
            for _ in 0..ENQUEUE_THREADS {
                scope.spawn(|| {
                    for _ in 0..per_thread {
                        queue
                            .enqueue(MAILBOX, &pair.public, &message)
                            .expect("enqueue");
                    }
                });
            }
        });
        let concurrent_rate =
            (per_thread * ENQUEUE_THREADS) as f64 / started.elapsed().as_secs_f64();
        report(
            &format!("enqueue (fsync) x{ENQUEUE_THREADS}"),
            size,
            concurrent_rate,
        );
        let enqueued = enqueued + per_thread * ENQUEUE_THREADS;

        let started = Instant::now();
        let report_of_drain = queue
            .drain(MAILBOX, &pair.secret, |_, message| {
                black_box(message);
                Ok(())
            })
            .expect("drain");
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(report_of_drain.delivered.len(), enqueued);
        report("drain (open+remove)", size, enqueued as f64 / elapsed);
    }
}

/// Run `operation` repeatedly for [`MEASURE_FOR`]; returns operations per second and the count.
fn measure(mut operation: impl FnMut()) -> (f64, usize) {
    for _ in 0..3 {
        operation();
    }
    let started = Instant::now();
    let mut count = 0usize;
    while started.elapsed() < MEASURE_FOR {
        operation();
        count += 1;
    }
    (count as f64 / started.elapsed().as_secs_f64(), count + 3)
}

fn report(what: &str, size: usize, per_second: f64) {
    let megabytes_per_second = per_second * size as f64 / (1024.0 * 1024.0);
    println!(
        "  {what:<22} {:>3} KB: {per_second:>9.0} msgs/s {megabytes_per_second:>8.1} MB/s",
        size / 1024
    );
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SEALMAIL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("create bench dir"),
        None => tempfile::tempdir().expect("create bench dir"),
    }
}

/// A message shaped like real mail: headers, a text body that compresses, and a base64 block of
/// random bytes (an attachment) that does not.
fn mail_like_message(size: usize) -> Vec<u8> {
    let mut message = String::from(
        "Received: from mail.example.org (mail.example.org [192.0.2.10])\r\n\
         \tby mx.example.net with ESMTPS id 4f2a9c; Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         From: Alice Example <alice@example.org>\r\nTo: bob@example.net\r\n\
         Subject: Quarterly figures and the draft agenda\r\n\
         Message-ID: <20261128100000.4f2a9c@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let prose = "Hello Bob, please find the figures attached. The meeting moves to Thursday; \
                 bring the draft agenda and the notes from last week.\r\n";
    while message.len() < size / 2 {
        message.push_str(prose);
    }
    message.push_str(
        "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let mut random = vec![0u8; size];
    getrandom::fill(&mut random).expect("random bytes");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = message.into_bytes();
    let mut column = 0;
    for byte in random {
        if bytes.len() >= size {
            break;
        }
        bytes.push(alphabet[(byte & 63) as usize]);
        column += 1;
        if column == 76 {
            bytes.extend_from_slice(b"\r\n");
            column = 0;
        }
    }
    bytes.truncate(size);
    bytes
}
