//! The Rust example runs here, so it keeps compiling and keeps doing what it says.

#[path = "../examples/quickstart.rs"]
mod quickstart;

#[test]
fn quickstart_example_stores_searches_and_backs_up() {
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let report = quickstart::run(&dir.path().join("data"), &backups).unwrap();
    // "invoice" is in every body, so all three match the full-text search.
    assert_eq!(report.imap_search_hits, vec![1, 2, 3]);
    assert_eq!(report.unseen_subjects, vec!["Invoice paid", "Your invoice"]);
    let stored = std::fs::read(&report.backup_file).unwrap();
    assert!(report.backup_file.starts_with(backups.to_str().unwrap()));
    assert!(
        !stored.windows(7).any(|w| w == b"invoice"),
        "the backup is encrypted"
    );
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&stored))
    };
    assert_eq!(report.backup_sha256, digest);
}
