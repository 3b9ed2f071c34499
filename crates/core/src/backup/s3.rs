//! S3-compatible storage for backups (AWS S3, Cloudflare R2, MinIO, Garage).
//!
//! Objects are `<prefix>/<mailbox_id>/<version>.sqlite` and `.json`. Every upload carries its
//! SHA-256 as an `x-amz-checksum-sha256` value the server checks before it stores anything
//! (per part for multipart uploads), and the snapshot's whole-file SHA-256 as object metadata.
//! The SDK is async; these calls are blocking (like the rest of the backup module) and drive
//! a small runtime of their own, so call them from blocking threads, never from async code.

use crate::error::{Error, Result};
use crate::registry::MailboxId;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use base64ct::Encoding;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Files up to this size go up in one request; larger ones as a multipart upload with parts of
/// this size, read one at a time (so memory stays bounded for any mailbox size).
const DEFAULT_PART_SIZE: usize = 16 << 20;

/// How to reach the service, beyond what the AWS environment says.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// A custom endpoint such as `http://127.0.0.1:9000`; overrides `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Overrides `AWS_REGION`.
    pub region: Option<String>,
    /// Address buckets as `endpoint/bucket/key`. Always on with a custom endpoint.
    pub force_path_style: bool,
    /// Static credentials (e.g. from the server's config file); otherwise the AWS
    /// environment's credential chain is used.
    pub credentials: Option<S3Credentials>,
    /// Size of a multipart upload part (at least 5 MiB, the S3 minimum); files up to this
    /// size go up in one request. `None`: 16 MiB.
    pub part_size: Option<usize>,
}

/// An access key pair. `Debug` never shows the secret.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

/// The smallest part S3 accepts for all but the last part of a multipart upload.
const MIN_PART_SIZE: usize = 5 << 20;

/// A bucket and key prefix, with a client for it.
#[derive(Clone)]
pub struct S3Target {
    bucket: String,
    prefix: String,
    client: Client,
    part_size: usize,
    /// A current-thread runtime that drives the SDK's futures for the blocking API.
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Target")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl PartialEq for S3Target {
    fn eq(&self, other: &Self) -> bool {
        self.bucket == other.bucket && self.prefix == other.prefix
    }
}

impl Eq for S3Target {}

impl S3Target {
    /// A target whose endpoint, region and credentials come from the standard AWS environment
    /// variables and files, adjusted by `options`.
    pub fn from_environment(bucket: &str, prefix: &str, options: S3Options) -> Result<Self> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "{bucket:?} is not a bucket name"
            )));
        }
        let part_size = options.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if part_size < MIN_PART_SIZE {
            return Err(Error::InvalidArgument(format!(
                "an S3 part size must be at least {MIN_PART_SIZE} bytes"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // What the options give is set on the loader itself, so the SDK does not go looking
        // for it (a missing region would be asked of the EC2 metadata service).
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = options.region {
            loader = loader.region(aws_sdk_s3::config::Region::new(region));
        }
        if let Some(credentials) = options.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                credentials.access_key_id,
                credentials.secret_access_key.as_str(),
                None,
                None,
                "sealmail-config",
            ));
        }
        let shared = runtime.block_on(loader.load());
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        let custom_endpoint = options.endpoint_url.is_some() || shared.endpoint_url().is_some();
        if let Some(endpoint) = options.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        config = config.force_path_style(options.force_path_style || custom_endpoint);
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            client: Client::from_conf(config.build()),
            part_size,
            runtime: Arc::new(runtime),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key prefix of everything stored for the target (empty or ending in `/`).
    fn root(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    pub(crate) fn key(&self, mailbox_id: &MailboxId, name: &str) -> String {
        format!("{}{}/{name}", self.root(), mailbox_id.as_str())
    }

    /// Upload a file, verified by the server against SHA-256 checksums computed here, with
    /// `sha256` (the whole file's, hex) as metadata.
    pub(crate) fn upload_file(
        &self,
        mailbox_id: &MailboxId,
        name: &str,
        path: &Path,
        sha256: &str,
    ) -> Result<()> {
        let key = self.key(mailbox_id, name);
        let mut file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        if size <= self.part_size as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)?;
            return self.put(&key, bytes, Some(sha256));
        }
        self.runtime.block_on(async {
            let upload = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .metadata("sha256", sha256)
                .send()
                .await
                .map_err(storage_error)?;
            let upload_id = upload
                .upload_id()
                .ok_or_else(|| Error::BackupStorage("no multipart upload id returned".into()))?
                .to_owned();
            let parts = self.upload_parts(&key, &upload_id, &mut file).await;
            let completed = match parts {
                Ok(parts) => self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(storage_error),
                Err(e) => Err(e),
            };
            if completed.is_err() {
                // Best effort: the error that matters is the upload's; an abandoned upload is
                // invisible to listing and expires under the bucket's lifecycle rules.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
            }
            completed
        })
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        file: &mut std::fs::File,
    ) -> Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        let mut part_number = 1;
        loop {
            let mut chunk = Vec::with_capacity(self.part_size);
            (&mut *file)
                .take(self.part_size as u64)
                .read_to_end(&mut chunk)?;
            if chunk.is_empty() {
                break;
            }
            let checksum = base64ct::Base64::encode_string(&Sha256::digest(&chunk));
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(storage_error)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(part_number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .checksum_sha256(checksum)
                    .build(),
            );
            part_number += 1;
        }
        Ok(parts)
    }

    pub(crate) fn put_bytes(
        &self,
        mailbox_id: &MailboxId,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        self.put(&self.key(mailbox_id, name), bytes, None)
    }

    fn put(&self, key: &str, bytes: Vec<u8>, sha256_metadata: Option<&str>) -> Result<()> {
        let checksum = base64ct::Base64::encode_string(&Sha256::digest(&bytes));
        self.runtime.block_on(async {
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(bytes));
            if let Some(sha256) = sha256_metadata {
                request = request.metadata("sha256", sha256);
            }
            let output = request.send().await.map_err(storage_error)?;
            // A server that ignores the checksum header answers without one; one that checked
            // it echoes it. Either way a mismatch would have been refused or is caught here.
            if let Some(echoed) = output.checksum_sha256()
                && echoed != checksum
            {
                return Err(Error::BackupStorage(format!(
                    "the server stored {key} with checksum {echoed}, expected {checksum}"
                )));
            }
            Ok(())
        })
    }

    pub(crate) fn get_bytes(&self, mailbox_id: &MailboxId, name: &str) -> Result<Vec<u8>> {
        let key = self.key(mailbox_id, name);
        self.runtime.block_on(async {
            let output = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(storage_error)?;
            let bytes = output
                .body
                .collect()
                .await
                .map_err(|e| Error::BackupStorage(format!("reading {key}: {e}")))?;
            Ok(bytes.into_bytes().to_vec())
        })
    }

    /// Stream an object into a local file, chunk by chunk.
    pub(crate) fn download_file(
        &self,
        mailbox_id: &MailboxId,
        name: &str,
        destination: &Path,
    ) -> Result<()> {
        let key = self.key(mailbox_id, name);
        let mut file = std::io::BufWriter::with_capacity(
            super::snapshot::IO_BUFFER,
            std::fs::File::create(destination)?,
        );
        self.runtime.block_on(async {
            let mut output = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(storage_error)?;
            while let Some(chunk) = output
                .body
                .try_next()
                .await
                .map_err(|e| Error::BackupStorage(format!("reading {key}: {e}")))?
            {
                file.write_all(&chunk)?;
            }
            Ok::<_, Error>(())
        })?;
        file.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    }

    pub(crate) fn delete(&self, mailbox_id: &MailboxId, name: &str) -> Result<()> {
        let key = self.key(mailbox_id, name);
        self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(storage_error)?;
            Ok(())
        })
    }

    /// Names of the objects under `<prefix>/<mailbox_id>/`.
    pub(crate) fn list_names(&self, mailbox_id: &MailboxId) -> Result<Vec<String>> {
        let prefix = format!("{}{}/", self.root(), mailbox_id.as_str());
        let (keys, _) = self.list(&prefix, false)?;
        Ok(keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .collect())
    }

    /// Mailbox ids: the "directories" directly under the prefix.
    pub(crate) fn list_mailbox_ids(&self) -> Result<Vec<MailboxId>> {
        let root = self.root();
        let (_, prefixes) = self.list(&root, true)?;
        Ok(prefixes
            .iter()
            .filter_map(|p| p.strip_prefix(&root)?.strip_suffix('/')?.parse().ok())
            .collect())
    }

    /// Keys (and, with `delimited`, common prefixes) under `prefix`, all pages.
    fn list(&self, prefix: &str, delimited: bool) -> Result<(Vec<String>, Vec<String>)> {
        self.runtime.block_on(async {
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix);
            if delimited {
                request = request.delimiter("/");
            }
            let mut pages = request.into_paginator().send();
            let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
            while let Some(page) = pages.next().await {
                let page = page.map_err(storage_error)?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                prefixes.extend(
                    page.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_owned)),
                );
            }
            Ok((keys, prefixes))
        })
    }
}

fn storage_error<E: std::error::Error + 'static>(error: aws_sdk_s3::error::SdkError<E>) -> Error {
    Error::BackupStorage(aws_sdk_s3::error::DisplayErrorContext(&error).to_string())
}
