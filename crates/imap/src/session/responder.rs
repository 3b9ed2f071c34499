//! Buffered response output: commands push encoded responses; the buffer is written to the
//! client when a command completes, or earlier once it grows large (big FETCH results), so memory
//! per connection stays bounded.

use crate::proto::{EncodeOptions, Response, encode_response};
use std::io;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Flush early once this much output is buffered.
const FLUSH_THRESHOLD: usize = 256 * 1024;

/// The output side of a connection for the duration of one event. It borrows the stream, so
/// the driver can read, then write, then switch the stream to TLS in between.
pub struct Responder<'a> {
    buf: Vec<u8>,
    writer: &'a mut (dyn AsyncWrite + Unpin + Send),
    pub options: EncodeOptions,
}

impl<'a> Responder<'a> {
    pub fn new(writer: &'a mut (dyn AsyncWrite + Unpin + Send), options: EncodeOptions) -> Self {
        Responder {
            buf: Vec::new(),
            writer,
            options,
        }
    }

    /// Encode a response into the buffer.
    pub fn push(&mut self, response: &Response) {
        encode_response(response, self.options, &mut self.buf);
    }

    /// Write everything buffered to the client.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.writer.write_all(&self.buf).await?;
            self.buf.clear();
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
