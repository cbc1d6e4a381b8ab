//! The reading half of an established link: `LinkReader` reads into one
//! growing buffer and hands out each complete record as `Bytes` sliced from
//! it, without copying or zero-filling.

use bytes::{Bytes, BytesMut};

use super::codec;
use super::transport::ReadHalf;
use super::LinkError;

/// Bytes a reader asks the socket for at a time, at least.
const READ_CHUNK: usize = 64 * 1024;

/// The receiving half of a link.
pub struct LinkReader {
    half: ReadHalf,
    buf: BytesMut,
}

impl LinkReader {
    pub(super) fn new(half: ReadHalf) -> Self {
        Self {
            half,
            buf: BytesMut::new(),
        }
    }

    async fn fill(&mut self) -> Result<(), LinkError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match self.half.read_buf(&mut self.buf).await {
            Ok(0) => Err(LinkError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(LinkError::Io(e)),
        }
    }

    /// Waits for data, then hands every complete record read to `each`.
    /// Fails when the link closes or carries a malformed record.
    pub async fn read_batch(&mut self, each: impl FnMut(Bytes)) -> Result<(), LinkError> {
        self.fill().await?;
        self.drain(each)
    }

    /// Waits until more data has been read.
    pub async fn ready(&mut self) -> Result<(), LinkError> {
        self.fill().await
    }

    /// Hands every complete record read so far to `each`.
    pub fn drain(&mut self, mut each: impl FnMut(Bytes)) -> Result<(), LinkError> {
        while let Some(record) = codec::split_record(&mut self.buf)? {
            each(record);
        }
        Ok(())
    }

    /// The next record, reading as much as it takes.
    pub async fn next(&mut self) -> Result<Bytes, LinkError> {
        self.next_within(codec::MAX_RECORD).await
    }

    /// The next record, refused if it says it is longer than `max` bytes
    /// (a handshake's: nothing is reserved for a peer not yet known).
    pub async fn next_within(&mut self, max: usize) -> Result<Bytes, LinkError> {
        loop {
            if let Some(record) = codec::split_record_within(&mut self.buf, max)? {
                return Ok(record);
            }
            self.fill().await?;
        }
    }

    /// Whether records read past the last one handed out wait in the buffer.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }
}
