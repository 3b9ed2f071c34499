//! What each command does.

use crate::cli::{
    AccountCommand, BackupArgs, Cli, Command, DomainCommand, ExportArgs, ForwardArgs, ImportArgs,
    RestoreArgs,
};
use crate::progress::ProgressBar;
use anyhow::{Context, Result, bail};
use sealmail_core::backup::{
    self, BackupOptions, BackupOutcome, BackupTarget, ExportFormat, RestoreRequest, RetentionPolicy,
};
use sealmail_core::import::{ImportSource, import};
use sealmail_core::registry::{AccountOptions, Registry};
use std::io::{BufRead, Write};
use zeroize::Zeroizing;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => crate::serve::serve(&cli.data_dir, config.as_deref()),
        Command::Queue(command) => crate::queue_cmd::run(&cli.data_dir, command),
        Command::Account(command) => account(&cli.data_dir, command),
        Command::Import(args) => import_command(&cli.data_dir, args),
        Command::Query {
            address, request, ..
        } => {
            let request: serde_json::Value =
                serde_json::from_str(&request).context("the request is not valid JSON")?;
            let registry = Registry::open(&cli.data_dir)?;
            let password = read_secret_line("password")?;
            let opened = sealmail_core::account::open_mailbox(&registry, &address, &password)?;
            let output = opened.mailbox().query(&request)?;
            let mut out = std::io::stdout().lock();
            for line in output.into_lines() {
                writeln!(out, "{line}")?;
            }
            opened.record_usage(&registry)?;
            Ok(())
        }
        Command::Backup(args) => backup_command(&cli.data_dir, args),
        Command::Restore(args) => restore_command(&cli.data_dir, args),
        Command::Export(args) => export_command(&cli.data_dir, args),
        Command::Domain(DomainCommand::DkimKeygen {
            domain,
            selector,
            algorithm,
            replace,
        }) => {
            let algorithm: sealmail_smtp::DkimAlgorithm = algorithm.parse()?;
            let record = sealmail_smtp::DkimKeys::new(&cli.data_dir)
                .generate(&domain, &selector, algorithm, replace)?;
            println!("Publish this DNS TXT record, then outbound mail from {domain} is signed:");
            // Zone files take at most 255 characters per string; longer values (RSA) are
            // split into several strings, which DNS joins.
            let strings: Vec<String> = record
                .value
                .as_bytes()
                .chunks(255)
                .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
                .collect();
            println!("{}. IN TXT {}", record.name, strings.join(" "));
            Ok(())
        }
        Command::Deliver { address } => {
            let registry = Registry::open(&cli.data_dir)?;
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut raw)?;
            if raw.is_empty() {
                bail!("expected a message on standard input");
            }
            let limit = sealmail_core::seal::MAX_SEALED_MESSAGE_LEN;
            if raw.len() > limit {
                bail!(
                    "message of {} bytes exceeds the {limit}-byte limit",
                    raw.len()
                );
            }
            sealmail_core::account::deliver_sealed(&registry, &address, &raw)?;
            Ok(())
        }
    }
}

fn account(data_dir: &std::path::Path, command: AccountCommand) -> Result<()> {
    match command {
        AccountCommand::Add {
            address,
            password_stdin,
            quota,
            recovery_code,
        } => {
            let registry = Registry::open_or_create(data_dir)?;
            let password = if password_stdin {
                Some(read_secret_line("password")?)
            } else {
                None
            };
            let options = AccountOptions {
                quota,
                with_recovery_code: recovery_code,
                ..Default::default()
            };
            let account = registry.add_account(
                &address,
                password.as_deref().map(String::as_str),
                &options,
            )?;
            let mut out = std::io::stdout().lock();
            if let Some(generated) = &account.generated_password {
                writeln!(out, "{}", generated.as_str())?;
            }
            if let Some(code) = &account.recovery_code {
                writeln!(out, "recovery code: {}", code.as_str())?;
            }
            eprintln!("created {}", account.address.as_str());
            Ok(())
        }
        AccountCommand::List => {
            let registry = Registry::open(data_dir)?;
            let mut out = std::io::stdout().lock();
            for info in registry.list_accounts()? {
                let quota = info
                    .quota
                    .map_or_else(|| "unlimited".to_string(), |q| q.to_string());
                writeln!(
                    out,
                    "{}\t{}\tquota={}\tused={}",
                    info.address.as_str(),
                    info.mailbox_id.as_str(),
                    quota,
                    info.used_bytes
                )?;
            }
            Ok(())
        }
        AccountCommand::Remove {
            address,
            yes,
            purge_backups,
        } => {
            if !yes {
                bail!("removing {address} deletes its mail for good; add --yes to confirm");
            }
            let registry = Registry::open(data_dir)?;
            if let Some(target) = purge_backups {
                let account = registry
                    .lookup(&address)?
                    .with_context(|| format!("no account {address}"))?;
                let target = BackupTarget::parse(&target)?;
                let purged = backup::purge_backups(&target, &account.mailbox_id)?;
                eprintln!("deleted {purged} backup version(s)");
            }
            registry.remove_account(&address)?;
            eprintln!("removed {address}");
            Ok(())
        }
        AccountCommand::Passwd { address, .. } => {
            let registry = Registry::open(data_dir)?;
            let mut lines = std::io::stdin().lock();
            let old = read_line(&mut lines, "old password")?;
            let new = read_line(&mut lines, "new password")?;
            registry.change_password(&address, &old, &new)?;
            eprintln!("password changed for {address}");
            Ok(())
        }
        AccountCommand::RotateKey { address, .. } => {
            let registry = Registry::open(data_dir)?;
            let password = read_secret_line("password")?;
            let code = sealmail_core::account::rotate_mailbox_key(&registry, &address, &password)?;
            if let Some(code) = code {
                println!("new recovery code: {}", code.as_str());
            }
            eprintln!("mailbox key rotated for {address}");
            Ok(())
        }
        AccountCommand::Recover { address, .. } => {
            let registry = Registry::open(data_dir)?;
            let mut lines = std::io::stdin().lock();
            let code = read_line(&mut lines, "recovery code")?;
            let new = read_line(&mut lines, "new password")?;
            registry.reset_password_with_recovery_code(&address, &code, &new)?;
            eprintln!("password reset for {address}");
            Ok(())
        }
        AccountCommand::Forward(args) => forward_command(data_dir, args),
    }
}

fn forward_command(data_dir: &std::path::Path, args: ForwardArgs) -> Result<()> {
    use sealmail_core::registry::{ForwardMode, WebhookSecret};
    let registry = Registry::open(data_dir)?;
    let address = &args.address;
    if registry.lookup(address)?.is_none() {
        bail!("no account {address}");
    }
    if args.clear {
        registry.clear_forwarding(address)?;
    }
    for target in &args.remove {
        if !registry.remove_forward_target(address, target)? {
            bail!("{address} does not forward to {target}");
        }
    }
    for target in &args.to {
        registry.add_forward_address(address, target)?;
    }
    if let Some(url) = &args.webhook {
        let secret = if args.secret_stdin {
            read_secret_line("webhook secret")?
        } else {
            let mut random = Zeroizing::new([0u8; 32]);
            getrandom::fill(random.as_mut_slice())
                .map_err(|e| anyhow::anyhow!("random source: {e}"))?;
            let generated = Zeroizing::new(hex::encode(random.as_slice()));
            println!("webhook secret: {}", generated.as_str());
            generated
        };
        registry.add_forward_webhook(
            address,
            url,
            &WebhookSecret::new(secret.as_bytes().to_vec())?,
        )?;
    }
    if let Some(mode) = &args.mode {
        registry.set_forward_mode(address, mode.parse::<ForwardMode>()?)?;
    }
    let mut out = std::io::stdout().lock();
    match registry.forwarding(address)? {
        Some(forwarding) if !forwarding.is_empty() => {
            writeln!(out, "mode\t{}", forwarding.mode.as_str())?;
            for target in &forwarding.addresses {
                writeln!(out, "to\t{target}")?;
            }
            for webhook in &forwarding.webhooks {
                writeln!(out, "webhook\t{}", webhook.url)?;
            }
        }
        _ => writeln!(out, "no forwarding: mail is delivered to the mailbox only")?,
    }
    Ok(())
}

fn import_command(data_dir: &std::path::Path, args: ImportArgs) -> Result<()> {
    let registry = Registry::open(data_dir)?;
    let password = read_secret_line("password")?;
    let mut mailbox = sealmail_core::account::open_mailbox(&registry, &args.address, &password)?;
    let mut failed = 0usize;
    let mut total = 0u64;
    for path in &args.sources {
        let source = ImportSource::detect(path).with_context(|| path.display().to_string())?;
        let mut bar = ProgressBar::on_terminal();
        let report = import(mailbox.mailbox_mut(), &source, &args.folder, |progress| {
            bar.update(progress.imported, 0, "messages imported", progress.bytes);
        })
        .with_context(|| path.display().to_string())?;
        bar.finish();
        for (origin, reason) in &report.failed {
            eprintln!("skipped {origin}: {reason}");
        }
        failed += report.failed.len();
        total += report.imported;
    }
    mailbox.record_usage(&registry)?;
    eprintln!("imported {total} messages into {}", args.folder);
    if failed > 0 {
        bail!("{failed} message(s) could not be imported (listed above)");
    }
    Ok(())
}

/// One line from stdin, without its line ending, in memory that is wiped after use.
fn read_secret_line(what: &str) -> Result<Zeroizing<String>> {
    read_line(&mut std::io::stdin().lock(), what)
}

fn read_line(input: &mut impl BufRead, what: &str) -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    if input.read_line(&mut line)? == 0 {
        bail!("expected the {what} on standard input");
    }
    let trimmed_len = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed_len);
    if line.is_empty() {
        bail!("the {what} read from standard input is empty");
    }
    Ok(line)
}

fn backup_command(data_dir: &std::path::Path, args: BackupArgs) -> Result<()> {
    let registry = Registry::open(data_dir)?;
    let target = BackupTarget::parse(&args.target)?;
    if args.list {
        let account = registry
            .lookup(&args.address)?
            .with_context(|| format!("no account {}", args.address))?;
        let mut out = std::io::stdout().lock();
        for manifest in target.list_versions(&account.mailbox_id)? {
            writeln!(
                out,
                "{}\t{} bytes\tsha256={}",
                manifest.version, manifest.size, manifest.sha256
            )?;
        }
        return Ok(());
    }
    let password = read_secret_line("password")?;
    let options = BackupOptions {
        retention: Some(RetentionPolicy {
            keep_daily: args.keep_daily,
            keep_monthly: args.keep_monthly,
        }),
        now: None,
    };
    match backup::backup_account(&registry, &args.address, &password, &target, &options)? {
        BackupOutcome::Stored { manifest, pruned } => {
            println!(
                "stored {} ({} bytes, sha256 {})",
                manifest.version, manifest.size, manifest.sha256
            );
            for version in pruned {
                eprintln!("retention deleted {version}");
            }
        }
        BackupOutcome::Unchanged { latest } => println!("unchanged since {}", latest.version),
    }
    Ok(())
}

fn restore_command(data_dir: &std::path::Path, args: RestoreArgs) -> Result<()> {
    let registry = Registry::open_or_create(data_dir)?;
    let target = BackupTarget::parse(&args.target)?;
    let password = read_secret_line("password")?;
    let mailbox_id = args.mailbox_id.as_deref().map(str::parse).transpose()?;
    let request = RestoreRequest {
        address: &args.address,
        password: &password,
        version: args.version.parse()?,
        mailbox_id,
        session_open: false,
    };
    let outcome = backup::restore(&registry, &target, &request, |_| Ok(()))?;
    println!("restored {} of {}", outcome.manifest.version, args.address);
    if let Some(code) = outcome.new_recovery_code {
        println!("new recovery code: {}", code.as_str());
    }
    Ok(())
}

fn export_command(data_dir: &std::path::Path, args: ExportArgs) -> Result<()> {
    let registry = Registry::open(data_dir)?;
    let password = read_secret_line("password")?;
    let opened = sealmail_core::account::open_mailbox(&registry, &args.address, &password)?;
    let format = match args.format.as_str() {
        "mbox" => ExportFormat::Mbox,
        "eml-zip" => ExportFormat::EmlZip,
        _ => ExportFormat::Maildir,
    };
    let mut bar = ProgressBar::on_terminal();
    let progress = |report: &backup::ExportReport| {
        bar.update(
            report.messages,
            report.total_messages,
            "messages",
            report.bytes,
        );
    };
    let report = if format == ExportFormat::EmlZip && args.output.as_os_str() == "-" {
        let stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let (report, mut stdout) =
            backup::write_eml_zip_to_stream(opened.mailbox(), stdout, progress)?;
        stdout.flush()?;
        report
    } else {
        backup::export(opened.mailbox(), format, &args.output, progress)?
    };
    bar.finish();
    for (from, to) in &report.renamed_folders {
        eprintln!("folder {from:?} written as {to:?} (Maildir++ uses '.' between levels)");
    }
    eprintln!(
        "exported {} messages in {} folders",
        report.messages, report.folders
    );
    Ok(())
}
