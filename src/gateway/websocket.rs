//! The server side of RFC 6455 on a connection the gateway owns: the
//! upgrade's accept key, an incremental decoder of masked client frames
//! (fragments reassembled, control frames interleaved, text checked as
//! UTF-8, sizes bounded), and the unmasked frames the gateway writes, each
//! built once as `Bytes` and shared by every connection it goes to. Headers
//! are parsed and formatted by tungstenite's `FrameHeader`.

use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// Close codes the gateway sends.
pub(super) mod close {
    /// Normal closure (echoing the client's close).
    pub(crate) const NORMAL: u16 = 1000;
    /// Going away: a client that answered no ping.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// A frame that breaks the protocol.
    pub(crate) const PROTOCOL: u16 = 1002;
    /// A text message that is not UTF-8.
    pub(crate) const INVALID: u16 = 1007;
    /// A policy violation: a slow consumer, an expired token.
    pub(crate) const POLICY: u16 = 1008;
    /// A message over the size limit.
    pub(crate) const TOO_BIG: u16 = 1009;
    /// The gateway is stopping.
    pub(crate) const RESTART: u16 = 1012;
}

/// The `Sec-WebSocket-Accept` answer to a client's key.
pub(super) fn accept_key(key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key)
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message (refused by the protocol, but not fatal).
    Binary,
    /// A ping, to answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong (answers our pings).
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Why the connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fatal {
    /// The close code to send.
    pub(super) code: u16,
    /// The reason to send.
    pub(super) reason: &'static str,
}

fn fatal(code: u16, reason: &'static str) -> Fatal {
    Fatal { code, reason }
}

/// Decodes client frames across reads. Holds memory only while a frame or
/// a fragmented message is incomplete.
pub(super) struct Decoder {
    /// Bytes of an incomplete frame, carried to the next read.
    partial: Vec<u8>,
    /// A fragmented message so far: whether it is text, and its payload.
    message: Option<(bool, Vec<u8>)>,
    /// Largest message accepted; past it the connection closes with 1009.
    max: usize,
}

impl Decoder {
    pub(super) fn new(max: usize) -> Self {
        Self {
            partial: Vec::new(),
            message: None,
            max,
        }
    }

    /// Decodes what was read (`data` may be unmasked in place) and hands
    /// each complete message to `each`, in order.
    pub(super) fn feed(
        &mut self,
        data: &mut [u8],
        each: &mut dyn FnMut(Incoming<'_>),
    ) -> Result<(), Fatal> {
        if self.partial.is_empty() {
            let used = self.frames(data, each)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.frames(&mut buf, each)?;
            buf.drain(..used);
            self.partial = buf;
        }
        if self.partial.capacity() > 4096 && self.partial.is_empty() {
            self.partial = Vec::new();
        }
        Ok(())
    }

    /// Decodes whole frames from the front of `buf`; returns the bytes used.
    fn frames(
        &mut self,
        buf: &mut [u8],
        each: &mut dyn FnMut(Incoming<'_>),
    ) -> Result<usize, Fatal> {
        let mut at = 0;
        loop {
            let mut cursor = Cursor::new(&buf[at..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(at),
                Err(_) => return Err(fatal(close::PROTOCOL, "bad frame header")),
            };
            let head = cursor.position() as usize;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > self.max {
                return Err(fatal(close::TOO_BIG, "frame too large"));
            }
            if buf.len() - at - head < len {
                return Ok(at);
            }
            let start = at + head;
            let payload = &mut buf[start..start + len];
            at = start + len;
            self.frame(header, payload, each)?;
        }
    }

    fn frame(
        &mut self,
        header: FrameHeader,
        payload: &mut [u8],
        each: &mut dyn FnMut(Incoming<'_>),
    ) -> Result<(), Fatal> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(fatal(close::PROTOCOL, "no extension was negotiated"));
        }
        let Some(mask) = header.mask else {
            return Err(fatal(close::PROTOCOL, "client frames must be masked"));
        };
        unmask(payload, mask);
        match header.opcode {
            OpCode::Control(control) => self::control(&header, control, payload, each)?,
            OpCode::Data(Data::Continue) => {
                let Some((text, mut message)) = self.message.take() else {
                    return Err(fatal(close::PROTOCOL, "continuation of no message"));
                };
                if message.len() + payload.len() > self.max {
                    return Err(fatal(close::TOO_BIG, "message too large"));
                }
                message.extend_from_slice(payload);
                if header.is_final {
                    deliver(text, &message, each)?;
                } else {
                    self.message = Some((text, message));
                }
            }
            OpCode::Data(data @ (Data::Text | Data::Binary)) => {
                if self.message.is_some() {
                    return Err(fatal(
                        close::PROTOCOL,
                        "a new message inside a fragmented one",
                    ));
                }
                let text = data == Data::Text;
                if header.is_final {
                    deliver(text, payload, each)?;
                } else {
                    self.message = Some((text, payload.to_vec()));
                }
            }
            OpCode::Data(Data::Reserved(_)) => {
                return Err(fatal(close::PROTOCOL, "unknown opcode"))
            }
        }
        Ok(())
    }
}

/// A control frame: a ping, a pong or a close.
fn control(
    header: &FrameHeader,
    control: Control,
    payload: &[u8],
    each: &mut dyn FnMut(Incoming<'_>),
) -> Result<(), Fatal> {
    if !header.is_final || payload.len() > 125 {
        return Err(fatal(close::PROTOCOL, "bad control frame"));
    }
    match control {
        Control::Ping => each(Incoming::Ping(payload)),
        Control::Pong => each(Incoming::Pong),
        Control::Close => {
            let code = match payload {
                [] => None,
                [a, b, rest @ ..] if std::str::from_utf8(rest).is_ok() => {
                    Some(u16::from_be_bytes([*a, *b]))
                }
                _ => return Err(fatal(close::PROTOCOL, "bad close frame")),
            };
            each(Incoming::Close(code));
        }
        Control::Reserved(_) => return Err(fatal(close::PROTOCOL, "unknown opcode")),
    }
    Ok(())
}

fn deliver(text: bool, payload: &[u8], each: &mut dyn FnMut(Incoming<'_>)) -> Result<(), Fatal> {
    if !text {
        each(Incoming::Binary);
        return Ok(());
    }
    match simdutf8::basic::from_utf8(payload) {
        Ok(s) => {
            each(Incoming::Text(s));
            Ok(())
        }
        Err(_) => Err(fatal(close::INVALID, "text is not UTF-8")),
    }
}

/// Undoes the client's masking, four bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let mut chunks = payload.chunks_exact_mut(4);
    let key = u32::from_ne_bytes(mask);
    for chunk in &mut chunks {
        let word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ key;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    };
    let len = payload.len() as u64;
    let mut out = BytesMut::with_capacity(header.len(len) + payload.len());
    // Formatting into memory cannot fail.
    let _ = header.format(len, &mut (&mut out).writer());
    out.extend_from_slice(payload);
    out.freeze()
}

/// A text frame, header and payload in one buffer (the hot path: its
/// header is written directly, the same bytes as `frame` formats).
pub(super) fn text(payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x81);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xffff => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.extend_from_slice(payload);
    out.freeze()
}

/// A pong answering a ping.
pub(super) fn pong(payload: &[u8]) -> Bytes {
    frame(OpCode::Control(Control::Pong), payload)
}

/// A ping with no payload (heartbeats).
pub(super) fn ping() -> Bytes {
    frame(OpCode::Control(Control::Ping), &[])
}

/// A close frame with a code and a reason.
pub(super) fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
    frame(OpCode::Control(Control::Close), &payload)
}

#[cfg(test)]
mod tests;
