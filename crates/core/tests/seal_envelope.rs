//! The sealed-item format: round trips, and every way a damaged or foreign item must fail.

use sealmail_core::Error;
use sealmail_core::seal::envelope::{MIN_SEALED_LEN, SEAL_HEADER_LEN, open_with_context};
use sealmail_core::seal::{SealingKeyPair, SealingSecretKey, open, seal};

/// Mail-like bytes: compressible header lines mixed with incompressible random runs, so both the
/// compressor and the cipher see realistic input.
fn sample_message(len: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(len);
    let mut line = 0u64;
    while message.len() < len {
        message.extend_from_slice(
            format!("Received: from relay{line}.example.org by mx.example.net; line {line}\r\n")
                .as_bytes(),
        );
        let mut noise = [0u8; 48];
        getrandom::fill(&mut noise).unwrap();
        message.extend_from_slice(&noise);
        line += 1;
    }
    message.truncate(len);
    message
}

fn assert_corrupt(result: sealmail_core::Result<zeroize::Zeroizing<Vec<u8>>>, what: &str) {
    match result {
        Err(Error::SealedItemCorrupt(_)) => {}
        Err(other) => panic!("{what}: expected SealedItemCorrupt, got {other:?}"),
        Ok(_) => panic!("{what}: a damaged item opened"),
    }
}

#[test]
fn round_trip_at_every_size_class() {
    let pair = SealingKeyPair::generate();
    for size in [0, 4 * 1024, 50 * 1024, 5 * 1024 * 1024] {
        let message = sample_message(size);
        let sealed = seal(&pair.public, &message).unwrap();
        let opened = open(&pair.secret, &sealed).unwrap();
        assert_eq!(opened.len(), size);
        assert!(opened.as_slice() == message.as_slice(), "size {size}");
    }
}

#[test]
fn round_trip_through_serialized_keys() {
    // What production does: public key from the registry, secret key from the mailbox file.
    let pair = SealingKeyPair::generate();
    let public =
        sealmail_core::seal::SealingPublicKey::from_bytes(&pair.public.to_bytes()).unwrap();
    let secret = SealingSecretKey::from_bytes(&pair.secret.to_bytes()).unwrap();
    let sealed = seal(&public, b"Subject: hi\r\n\r\nbody").unwrap();
    assert_eq!(
        open(&secret, &sealed).unwrap().as_slice(),
        b"Subject: hi\r\n\r\nbody"
    );
}

#[test]
fn two_seals_of_one_message_differ_everywhere_that_matters() {
    let pair = SealingKeyPair::generate();
    let message = sample_message(4096);
    let first = seal(&pair.public, &message).unwrap();
    let second = seal(&pair.public, &message).unwrap();
    assert_ne!(first, second);
    // Fresh ephemeral X25519 key and fresh ML-KEM ciphertext each time.
    assert_ne!(first[9..41], second[9..41]);
    assert_ne!(first[41..SEAL_HEADER_LEN], second[41..SEAL_HEADER_LEN]);
    // And so a fresh key: the bodies share no long run.
    assert_ne!(first[SEAL_HEADER_LEN..], second[SEAL_HEADER_LEN..]);
}

#[test]
fn every_sampled_single_byte_flip_is_detected() {
    let pair = SealingKeyPair::generate();
    let small = seal(&pair.public, b"From: a@example.org\r\n\r\nshort").unwrap();
    // Every byte of a small item: the whole header (version, key id, both KEM outputs) and body.
    for position in 0..small.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut damaged = small.clone();
            damaged[position] ^= mask;
            assert_corrupt(
                open(&pair.secret, &damaged),
                &format!("flip {mask:#04x} at {position}/{}", small.len()),
            );
        }
    }
    // A 50 KB item: a spread of positions across header and body, and the whole tag.
    let large = seal(&pair.public, &sample_message(50 * 1024)).unwrap();
    let mut positions: Vec<usize> = (0..large.len()).step_by(397).collect();
    positions.extend(large.len() - 16..large.len());
    positions.extend([SEAL_HEADER_LEN - 1, SEAL_HEADER_LEN, SEAL_HEADER_LEN + 1]);
    for position in positions {
        let mut damaged = large.clone();
        damaged[position] ^= 0x20;
        assert_corrupt(
            open(&pair.secret, &damaged),
            &format!("flip at {position}/{}", large.len()),
        );
    }
}

#[test]
fn wrong_secret_key_fails() {
    let recipient = SealingKeyPair::generate();
    let stranger = SealingKeyPair::generate();
    let sealed = seal(&recipient.public, b"for the recipient only").unwrap();
    assert_corrupt(open(&stranger.secret, &sealed), "stranger's key");

    // Even with the key id rewritten to the stranger's, the AEAD still refuses.
    let mut relabelled = sealed.clone();
    relabelled[1..9].copy_from_slice(&stranger.public.key_id());
    assert_corrupt(open(&stranger.secret, &relabelled), "relabelled key id");
}

#[test]
fn truncated_and_extended_items_fail() {
    let pair = SealingKeyPair::generate();
    let sealed = seal(&pair.public, &sample_message(4096)).unwrap();
    let mut lengths: Vec<usize> = (0..MIN_SEALED_LEN + 8).collect();
    lengths.extend((MIN_SEALED_LEN..sealed.len()).step_by(101));
    lengths.push(sealed.len() - 1);
    for length in lengths {
        assert_corrupt(
            open(&pair.secret, &sealed[..length]),
            &format!("truncated to {length}"),
        );
    }
    let mut extended = sealed.clone();
    extended.push(0);
    assert_corrupt(open(&pair.secret, &extended), "one byte appended");
}

#[test]
fn garbage_of_any_shape_fails_without_panicking() {
    let pair = SealingKeyPair::generate();
    for length in [1, 100, MIN_SEALED_LEN, MIN_SEALED_LEN + 500, 10_000] {
        let mut garbage = vec![0u8; length];
        getrandom::fill(&mut garbage).unwrap();
        garbage[0] = sealmail_core::seal::SEAL_FORMAT_VERSION;
        assert_corrupt(
            open(&pair.secret, &garbage),
            &format!("{length} random bytes"),
        );
    }
}

#[test]
fn context_mismatch_fails() {
    let pair = SealingKeyPair::generate();
    let sealed =
        sealmail_core::seal::envelope::seal_with_context(&pair.public, b"ctx-1", b"m").unwrap();
    assert_corrupt(
        open_with_context(&pair.secret, b"ctx-2", &sealed),
        "other context",
    );
    assert_eq!(
        open_with_context(&pair.secret, b"ctx-1", &sealed)
            .unwrap()
            .as_slice(),
        b"m"
    );
}
