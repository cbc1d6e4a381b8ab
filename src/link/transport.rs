//! What a link runs over: plain TCP, or TLS over TCP (`tls`). A plain
//! link's writer hands bytes to the socket from whichever task flushes
//! (`try_write`, no task woken); a TLS link's records are sealed by one
//! state for the whole connection, so only its writer task writes them.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// A connected link socket, before it is split.
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The reading and the writing half.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Self::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
            }
            Self::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                (
                    ReadHalf::Tls(read),
                    WriteHalf::Tls(tokio::sync::Mutex::new(write)),
                )
            }
        }
    }
}

/// The half a link reads from.
pub(crate) enum ReadHalf {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS over TCP.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

impl ReadHalf {
    /// Reads what has arrived into `buf`: the bytes read, 0 at the end.
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(half) => half.read_buf(buf).await,
            Self::Tls(half) => half.read_buf(buf).await,
        }
    }
}

/// The half a link writes to.
pub(crate) enum WriteHalf {
    /// Plain TCP: written from any task.
    Tcp(OwnedWriteHalf),
    /// TLS over TCP: written by one task at a time.
    Tls(tokio::sync::Mutex<tokio::io::WriteHalf<TlsStream<TcpStream>>>),
}

impl WriteHalf {
    /// Writes all of `bytes` (the handshake, before the writer task).
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(half) => half.write_all(bytes).await,
            Self::Tls(half) => write_sealed(half.get_mut(), bytes).await,
        }
    }
}

/// Writes and flushes through TLS (a record is sealed on flush).
pub(super) async fn write_sealed<W: AsyncWrite + Unpin>(
    half: &mut W,
    bytes: &[u8],
) -> io::Result<()> {
    half.write_all(bytes).await?;
    half.flush().await
}

/// The halves of a plain stream, for tests that speak the handshake by hand.
#[cfg(test)]
pub(super) fn tcp_halves(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    Stream::Tcp(stream).split()
}
