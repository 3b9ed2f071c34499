//! COMPRESS=DEFLATE (RFC 4978): a byte-stream wrapper that inflates what the client sends and
//! deflates what the server sends, both as raw DEFLATE (RFC 1951: no zlib header or trailer).
//!
//! Every flush of the wrapper ends the current burst with a sync flush (an empty stored block),
//! so the client can decode each burst of responses completely without waiting for more. The
//! wrapper sits between the session and the socket, or the TLS stream when TLS is active.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Compressed bytes read from the peer at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Write compressed output to the peer before accepting more once this much is waiting, so a
/// writer that never flushes cannot grow the buffer without bound.
const MAX_PENDING_OUTPUT: usize = 256 * 1024;

/// A stream with DEFLATE in both directions.
pub struct DeflateStream<S> {
    inner: S,
    inflate: Decompress,
    deflate: Compress,
    /// Compressed input received but not yet inflated, from `input_start` on.
    input: Vec<u8>,
    input_start: usize,
    /// The peer closed its side.
    input_closed: bool,
    /// Compressed output not yet written to `inner`, from `output_start` on.
    output: Vec<u8>,
    output_start: usize,
    /// Data was compressed since the last sync flush.
    unflushed: bool,
}

impl<S> std::fmt::Debug for DeflateStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateStream")
            .field("buffered_input", &(self.input.len() - self.input_start))
            .field("buffered_output", &(self.output.len() - self.output_start))
            .finish_non_exhaustive()
    }
}

impl<S> DeflateStream<S> {
    /// Wrap `inner`. `already_read` holds compressed bytes the caller read from `inner` before
    /// compression began (a client that sent its next command right behind COMPRESS).
    pub fn new(inner: S, already_read: Vec<u8>) -> Self {
        DeflateStream {
            inner,
            // `false`: raw DEFLATE, no zlib wrapper (RFC 4978 section 3).
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::default(), false),
            input: already_read,
            input_start: 0,
            input_closed: false,
            output: Vec::new(),
            output_start: 0,
            unflushed: false,
        }
    }

    /// Compress `data` (or, with `FlushCompress::Sync` and empty data, end the burst) into the
    /// output buffer.
    fn compress(&mut self, mut data: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.output.reserve(data.len() / 2 + 1024);
            let spare = self.output.capacity() - self.output.len();
            let (before_in, before_out) = (self.deflate.total_in(), self.deflate.total_out());
            self.deflate
                .compress_vec(data, &mut self.output, flush)
                .map_err(io::Error::other)?;
            let consumed = (self.deflate.total_in() - before_in) as usize;
            let produced = (self.deflate.total_out() - before_out) as usize;
            data = &data[consumed..];
            // Done once all input is taken and the compressor stopped short of the space it was
            // given (a full buffer may mean more flush output is waiting).
            if data.is_empty() && produced < spare {
                return Ok(());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> DeflateStream<S> {
    /// Write buffered compressed output to `inner` until none is left.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.output_start < self.output.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.output[self.output_start..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.output_start += n;
        }
        self.output.clear();
        self.output_start = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeflateStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Inflate what is buffered, even when empty: the inflater may hold output back.
            let (before_in, before_out) = (this.inflate.total_in(), this.inflate.total_out());
            let status = this
                .inflate
                .decompress(
                    &this.input[this.input_start..],
                    buf.initialize_unfilled(),
                    FlushDecompress::Sync,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (this.inflate.total_in() - before_in) as usize;
            let produced = (this.inflate.total_out() - before_out) as usize;
            this.input_start += consumed;
            buf.advance(produced);
            if produced > 0 {
                return Poll::Ready(Ok(()));
            }
            if status == Status::StreamEnd || this.input_closed {
                // The peer ended the DEFLATE stream or the connection: end of input.
                return Poll::Ready(Ok(()));
            }
            if consumed > 0 {
                continue;
            }
            // Nothing more to inflate from what is buffered: read more compressed input.
            this.input.drain(..this.input_start);
            this.input_start = 0;
            let start = this.input.len();
            this.input.resize(start + READ_CHUNK, 0);
            let mut raw = ReadBuf::new(&mut this.input[start..]);
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut raw);
            let got = raw.filled().len();
            this.input.truncate(start + got);
            ready!(result)?;
            if got == 0 {
                this.input_closed = true;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeflateStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.output.len() - this.output_start >= MAX_PENDING_OUTPUT {
            ready!(this.poll_drain(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.compress(data, FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.compress(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both ends wrapped: what one writes and flushes, the other reads, burst after burst, with
    /// compressed bytes that arrived early handed over through `already_read`.
    #[tokio::test]
    async fn bursts_round_trip_through_raw_deflate() {
        let (a, b) = tokio::io::duplex(1024);
        let mut client = DeflateStream::new(a, Vec::new());
        let mut server = DeflateStream::new(b, Vec::new());
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let writer = tokio::spawn(async move {
            client.write_all(b"a1 NOOP\r\n").await.unwrap();
            client.flush().await.unwrap();
            client.write_all(&big).await.unwrap();
            client.flush().await.unwrap();
            client
        });
        let mut first = [0u8; 9];
        server.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"a1 NOOP\r\n");
        let mut rest = vec![0u8; 1_200_000];
        server.read_exact(&mut rest).await.unwrap();
        let expected: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        assert!(rest == expected, "large burst corrupted");
        drop(writer.await.unwrap());
        let mut tail = Vec::new();
        server.read_to_end(&mut tail).await.unwrap();
        assert!(tail.is_empty());
    }

    #[tokio::test]
    async fn output_is_raw_deflate_ending_in_a_sync_flush() {
        let (a, mut b) = tokio::io::duplex(4096);
        let mut server = DeflateStream::new(a, Vec::new());
        server.write_all(b"* OK hello\r\n").await.unwrap();
        server.flush().await.unwrap();
        // Flushing again without new data sends nothing more.
        server.flush().await.unwrap();
        drop(server);
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).await.unwrap();
        assert!(wire.ends_with(&[0, 0, 0xff, 0xff]), "{wire:02x?}");
        assert_eq!(
            wire.windows(4).filter(|w| *w == [0, 0, 0xff, 0xff]).count(),
            1
        );
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(64);
        inflate
            .decompress_vec(&wire, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, b"* OK hello\r\n");
    }
}
