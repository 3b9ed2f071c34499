//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sealmail",
    version,
    about = "An encrypted mail store and mail server"
)]
pub struct Cli {
    /// Where the registry, mailboxes and queues live.
    #[arg(
        long,
        global = true,
        env = "SEALMAIL_DATA_DIR",
        default_value = "./sealmail-data"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mail server (IMAP, IMAPS) on the listeners from the config file or defaults.
    Serve {
        /// TOML configuration file; without one, everything listens on 127.0.0.1.
        #[arg(long, env = "SEALMAIL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage accounts (addresses and their encrypted mailboxes).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Import .eml files, mbox files, Maildir folders or eml-zip archives into a mailbox.
    Import(ImportArgs),
    /// Run a Mongo-style JSON query against a mailbox; prints one JSON document per line.
    /// Example: '{"collection":"messages","op":"find","filter":{"seen":false},"limit":10}'
    Query {
        address: String,
        /// The request: collection, op, filter, projection, sort, skip, limit, ...
        request: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Back up a mailbox (encrypted as it is at rest) to `file:///DIR` or `s3://BUCKET/PREFIX`;
    /// S3 settings come from the standard AWS environment (AWS_ENDPOINT_URL, AWS_REGION, ...).
    Backup(BackupArgs),
    /// Restore a backup version; stop `sealmail serve` first (the live file is swapped).
    Restore(RestoreArgs),
    /// Export every folder as Maildir++ or mbox files into an empty directory, or as one zip
    /// of .eml files with a manifest of flags (eml-zip; `--output -` streams it to stdout).
    Export(ExportArgs),
    /// Manage mail domains (DKIM signing keys).
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Deliver one message read from stdin (a local delivery agent for another MTA): it is
    /// sealed to the mailbox's public key and folded in at the owner's next login.
    Deliver { address: String },
    /// Inspect the sealed and outbound queues; retry or bounce outbound items.
    #[command(subcommand)]
    Queue(crate::queue_cmd::QueueCommand),
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Create the DKIM signing key of DOMAIN (stored under <data-dir>/dkim/, mode 0600) and
    /// print the DNS TXT record to publish. Outbound mail from DOMAIN is then signed.
    DkimKeygen {
        domain: String,
        /// The selector: the key's name in DNS (`<selector>._domainkey.<domain>`).
        #[arg(long, default_value = "sealmail")]
        selector: String,
        #[arg(long, value_parser = ["ed25519", "rsa"], default_value = "ed25519")]
        algorithm: String,
        /// Replace an existing key (signatures stop verifying until DNS has the new record).
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints the generated password unless one is read from stdin.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Storage quota in bytes.
        #[arg(long)]
        quota: Option<u64>,
        /// Also create a recovery code (printed once) that can reset a forgotten password.
        #[arg(long)]
        recovery_code: bool,
    },
    /// List accounts: address, mailbox id, quota, bytes used.
    List,
    /// Delete an account and its mailbox files.
    Remove {
        address: String,
        /// Confirm the deletion: the mail is gone for good.
        #[arg(long)]
        yes: bool,
        /// Also delete every backup of the mailbox at this target (`file:///DIR`, `s3://...`).
        #[arg(long, value_name = "TARGET")]
        purge_backups: Option<String>,
    },
    /// Change a password: reads the old password line, then the new one, from stdin.
    Passwd {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Re-encrypt the mailbox under a fresh data key (after a suspected leak); reads the
    /// password from stdin. Prints the new recovery code if the account had one.
    RotateKey {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Set a new password with the recovery code: reads the code line, then the new password.
    Recover {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Show or change where an address's mail is forwarded. Without options, prints the
    /// settings (webhook secrets are never printed again).
    Forward(ForwardArgs),
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    pub address: String,
    /// Forward to this address too (repeatable); a local address gets its own copy, a remote
    /// one goes through the outbound relay.
    #[arg(long, value_name = "ADDRESS")]
    pub to: Vec<String>,
    /// POST each message as JSON to this http(s) URL, signed with HMAC-SHA256.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Read the webhook's HMAC secret from the first line of standard input (otherwise a
    /// random one is generated and printed once). Secrets never go on the command line.
    #[arg(long, requires = "webhook")]
    pub secret_stdin: bool,
    /// `store-and-forward` (keep a copy in the mailbox) or `forward-only`.
    #[arg(long)]
    pub mode: Option<String>,
    /// Stop forwarding to this address or webhook URL (repeatable).
    #[arg(long, value_name = "TARGET")]
    pub remove: Vec<String>,
    /// Remove every forwarding setting of the address.
    #[arg(long, conflicts_with_all = ["to", "webhook", "mode", "remove"])]
    pub clear: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub address: String,
    /// .eml files, mbox files, Maildir directories or eml-zip archives.
    #[arg(required = true)]
    pub sources: Vec<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long, required = true)]
    pub password_stdin: bool,
    /// Target folder (Maildir++ subfolders go below it).
    #[arg(long, default_value = "INBOX")]
    pub folder: String,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    pub address: String,
    /// `file:///DIR` or `s3://BUCKET/PREFIX`.
    #[arg(long)]
    pub target: String,
    /// List the versions stored at the target instead of backing up (no password needed).
    #[arg(long)]
    pub list: bool,
    #[arg(long, required_unless_present = "list")]
    pub password_stdin: bool,
    /// Retention: newest version of each of the last N days...
    #[arg(long, default_value_t = 7)]
    pub keep_daily: u32,
    /// ...and of each of the last M months.
    #[arg(long, default_value_t = 12)]
    pub keep_monthly: u32,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    pub address: String,
    #[arg(long)]
    pub target: String,
    /// `latest` or a version name as listed by `sealmail backup --list`.
    #[arg(long, default_value = "latest")]
    pub version: String,
    /// For an address this data dir does not know: which mailbox at the target.
    #[arg(long)]
    pub mailbox_id: Option<String>,
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub address: String,
    #[arg(long, value_parser = ["mbox", "maildir", "eml-zip"])]
    pub format: String,
    /// mbox, maildir: the directory to write into (created; must be empty). eml-zip: the zip
    /// file to create (must not exist), or `-` for standard output.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, required = true)]
    pub password_stdin: bool,
}
