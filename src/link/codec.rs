//! Framing of link records: a little-endian `u32` length, then a postcard
//! body of at most `MAX_RECORD` bytes. Many records share one write; a reader
//! splits them off its buffer without copying. Anything larger than a record
//! may be is sent in `CHUNK`-sized parts by whoever produces it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest record a link carries; a longer one is a protocol error.
pub const MAX_RECORD: usize = 4 << 20;
/// Producers split payloads (long histories, large boards, hand-offs) into
/// parts of about this size, so that no record comes near `MAX_RECORD`.
pub const CHUNK: usize = 256 << 10;
/// Bytes of the length prefix.
const PREFIX: usize = 4;

/// A record that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record is over `MAX_RECORD`.
    #[error("link record of {0} bytes is over the {MAX_RECORD} byte limit")]
    TooLarge(usize),
    /// The body is not a record of the expected type.
    #[error("bad link record: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Serializes into the tail of a `BytesMut` without an intermediate buffer.
struct Tail<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Tail<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends one framed record to `buf`; on error `buf` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    buf: &mut BytesMut,
    record: &T,
) -> Result<(), CodecError> {
    let start = buf.len();
    buf.put_u32_le(0);
    if let Err(e) = postcard::serialize_with_flavor(record, Tail(buf)) {
        buf.truncate(start);
        return Err(e.into());
    }
    let len = buf.len() - start - PREFIX;
    if len > MAX_RECORD {
        buf.truncate(start);
        return Err(CodecError::TooLarge(len));
    }
    buf[start..start + PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// One framed record as its own buffer.
pub fn encode<T: Serialize + ?Sized>(record: &T) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(256);
    encode_into(&mut buf, record)?;
    Ok(buf.freeze())
}

/// Decodes a record body (without its length prefix).
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, CodecError> {
    Ok(postcard::from_bytes(body)?)
}

/// Decodes the front of a record body, and returns what follows it: fields
/// a newer peer appended, which an older reader ignores.
pub fn decode_front<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<(T, &'a [u8]), CodecError> {
    Ok(postcard::take_from_bytes(body)?)
}

/// Splits the next complete record body off the front of `buf`; `None` when
/// it has not fully arrived (room for it is then reserved).
pub fn split_record(buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
    split_record_within(buf, MAX_RECORD)
}

/// `split_record` for records of at most `max` bytes: a longer one is
/// refused before any room is reserved for it.
pub fn split_record_within(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, CodecError> {
    let Some(head) = buf.get(..PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > max {
        return Err(CodecError::TooLarge(len));
    }
    if buf.len() < PREFIX + len {
        buf.reserve(PREFIX + len - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample<'a> {
        n: u64,
        #[serde(borrow)]
        text: &'a str,
        #[serde(with = "serde_bytes")]
        raw: &'a [u8],
    }

    #[test]
    fn records_round_trip_and_split_at_boundaries() {
        let mut buf = BytesMut::new();
        for n in 0..3 {
            let raw = vec![n as u8; n as usize * 10];
            encode_into(
                &mut buf,
                &Sample {
                    n,
                    text: "hi",
                    raw: &raw,
                },
            )
            .unwrap();
        }
        let whole = buf.clone().freeze();
        // Fed one byte at a time, the same three records come out.
        let mut feed = BytesMut::new();
        let mut seen = Vec::new();
        for b in whole.iter() {
            feed.put_u8(*b);
            while let Some(rec) = split_record(&mut feed).unwrap() {
                let s: Sample<'_> = decode(&rec).unwrap();
                seen.push((s.n, s.raw.len()));
            }
        }
        assert_eq!(seen, vec![(0, 0), (1, 10), (2, 20)]);
        assert!(feed.is_empty());
    }

    #[test]
    fn oversized_records_are_refused() {
        let mut buf = BytesMut::new();
        buf.put_u32_le((MAX_RECORD + 1) as u32);
        assert!(matches!(
            split_record(&mut buf),
            Err(CodecError::TooLarge(_))
        ));
        let huge = vec![0u8; MAX_RECORD + 1];
        let mut out = BytesMut::from(&b"keep"[..]);
        let rec = Sample {
            n: 1,
            text: "",
            raw: &huge,
        };
        assert!(matches!(
            encode_into(&mut out, &rec),
            Err(CodecError::TooLarge(_))
        ));
        assert_eq!(
            &out[..],
            b"keep",
            "a refused record leaves the buffer as it was"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_split_and_decode_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(rec)) = split_record(&mut buf) {
                let _ = decode::<Sample<'_>>(&rec);
                let _ = decode::<crate::link::ToNode<'_>>(&rec);
                let _ = decode::<crate::link::FromNode<'_>>(&rec);
            }
        }

        #[test]
        fn encoded_samples_round_trip(n in any::<u64>(), text in ".{0,40}", raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rec = encode(&Sample { n, text: &text, raw: &raw }).unwrap();
            let mut buf = BytesMut::from(&rec[..]);
            let body = split_record(&mut buf).unwrap().unwrap();
            let back: Sample<'_> = decode(&body).unwrap();
            prop_assert_eq!(back, Sample { n, text: &text, raw: &raw });
        }
    }
}
