//! Buffered response output: commands push encoded responses; the buffer is written to the
//! client when a command completes, or earlier once it grows large (big FETCH results), so memory
//! per connection stays bounded.

use crate::proto::{EncodeOptions, Response, encode_response};
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Flush early once this much output is buffered.
const FLUSH_THRESHOLD: usize = 256 * 1024;

pub struct Responder {
    buf: Vec<u8>,
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    pub options: EncodeOptions,
}

impl Responder {
    pub fn new(writer: Box<dyn AsyncWrite + Unpin + Send>) -> Self {
        Responder {
            buf: Vec::with_capacity(4096),
            writer,
            options: EncodeOptions::default(),
        }
    }

    /// Encode a response into the buffer.
    pub fn push(&mut self, response: &Response) {
        encode_response(response, self.options, &mut self.buf);
    }

    /// Raw bytes (e.g. an already-encoded continuation).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Write everything buffered to the client.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.writer.write_all(&self.buf).await?;
            self.buf.clear();
            // Do not keep a huge buffer around after one big FETCH.
            if self.buf.capacity() > FLUSH_THRESHOLD * 2 {
                self.buf = Vec::with_capacity(4096);
            }
        }
        self.writer.flush().await
    }

    /// Flush if the buffer is large; called between chunks of long responses.
    pub async fn flush_if_large(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.writer.shutdown().await
    }
}
