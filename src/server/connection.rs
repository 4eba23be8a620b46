//! One client connection, from its first bytes to its end: TLS negotiation,
//! the startup packet's protocol version, then pgwire's message loop over a
//! stream that checks the text of every query is UTF-8.
//!
//! pgwire decodes query strings lossily (invalid bytes become U+FFFD), so a
//! query in another encoding would run mangled. [`Utf8Guard`] sits under
//! pgwire's framing: it reads the client's messages whole and replaces the
//! text of a `Query` or `Parse` message that is not UTF-8 with a marker the
//! handlers answer with `22021`, as Postgres does.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::{ClientInfo, DefaultClient, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{process_error, process_message, MaybeTls, PgWireMessageServerCodec};
use pgwire::tokio::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::error::{sqlstate, Error};

/// How long a client has to finish its startup (TLS, authentication).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The request codes a startup packet may carry instead of a version.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// A query text that was not UTF-8 starts with this (a noncharacter that
/// no client sends), followed by the offending bytes in hex; see
/// [`invalid_utf8`].
const INVALID_UTF8: char = '\u{FFFF}';

/// Messages larger than this are passed on unchecked (pgwire refuses them
/// anyway); the guard never buffers more than one message of this size.
const MAX_CHECKED_MESSAGE: usize = 256 << 20;

/// The error for a query whose text carried `INVALID_UTF8`, if it did.
pub fn invalid_utf8(query: &str) -> Option<Error> {
    let bytes = query.strip_prefix(INVALID_UTF8)?;
    Some(Error::user(
        sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
        format!("invalid byte sequence for encoding \"UTF8\": {bytes}"),
    ))
}

/// Serves one accepted connection until it ends.
pub async fn serve<H>(socket: TcpStream, tls: Option<TlsAcceptor>, handlers: H) -> io::Result<()>
where
    H: PgWireServerHandlers,
{
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    let io = tokio::select! {
        _ = &mut startup => return Ok(()),
        io = negotiate(socket, tls) => io?,
    };
    let Some((io, addr, secure)) = io else {
        return Ok(());
    };
    let mut socket = Framed::new(
        Utf8Guard::new(io),
        PgWireMessageServerCodec::new(DefaultClient::new(addr, secure)),
    );
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let startup_handler = handlers.startup_handler();
    let simple_query_handler = handlers.simple_query_handler();
    let extended_query_handler = handlers.extended_query_handler();
    let copy_handler = handlers.copy_handler();
    let cancel_handler = handlers.cancel_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let message = if starting {
            tokio::select! {
                _ = &mut startup => None,
                m = socket.next() => m,
            }
        } else {
            socket.next().await
        };
        let Some(Ok(message)) = message else {
            break;
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        if let Err(e) = process_message(
            message,
            &mut socket,
            startup_handler.clone(),
            simple_query_handler.clone(),
            extended_query_handler.clone(),
            copy_handler.clone(),
            cancel_handler.clone(),
        )
        .await
        {
            let fatal = e.is_fatal();
            process_error(&mut socket, e, extended).await?;
            if fatal {
                break;
            }
        }
        if cancel {
            break;
        }
    }
    Ok(())
}

/// Answers the client's TLS and GSS encryption requests and reads the
/// startup packet's protocol version. Returns the stream to speak the
/// protocol on, or None when the connection is over (a protocol before
/// 3.0 was refused, or the client left).
async fn negotiate(
    mut socket: TcpStream,
    tls: Option<TlsAcceptor>,
) -> io::Result<Option<(MaybeTls, std::net::SocketAddr, bool)>> {
    let addr = socket.peer_addr()?;
    loop {
        let mut head = [0u8; 8];
        if peek_exact(&socket, &mut head).await?.is_none() {
            return Ok(None);
        }
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        match code {
            SSL_REQUEST => {
                socket.read_exact(&mut head).await?;
                match &tls {
                    Some(acceptor) => {
                        socket.write_all(b"S").await?;
                        let stream = acceptor.accept(socket).await?;
                        return Ok(Some((MaybeTls::Tls(Box::new(stream)), addr, true)));
                    }
                    None => socket.write_all(b"N").await?,
                }
            }
            GSSENC_REQUEST => {
                socket.read_exact(&mut head).await?;
                socket.write_all(b"N").await?;
            }
            CANCEL_REQUEST => return Ok(Some((MaybeTls::Plain(socket), addr, false))),
            version if version >> 16 < 3 => {
                refuse_old_protocol(&mut socket, version).await?;
                return Ok(None);
            }
            _ => return Ok(Some((MaybeTls::Plain(socket), addr, false))),
        }
    }
}

/// Peeks exactly `buf.len()` bytes; None if the client closed first.
async fn peek_exact(socket: &TcpStream, buf: &mut [u8]) -> io::Result<Option<()>> {
    loop {
        let n = socket.peek(buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if n == buf.len() {
            return Ok(Some(()));
        }
        // Not all there yet: wait a little for the rest.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Postgres's answer to a protocol 2.0 (or older) startup: an error in the
/// old protocol's form (`E`, the text, a NUL), then the connection closes.
async fn refuse_old_protocol(socket: &mut TcpStream, version: u32) -> io::Result<()> {
    let message = format!(
        "FATAL:  unsupported frontend protocol {}.{}: server supports 3.0 to 3.0\n",
        version >> 16,
        version & 0xffff
    );
    let mut out = Vec::with_capacity(message.len() + 2);
    out.push(b'E');
    out.extend_from_slice(message.as_bytes());
    out.push(0);
    socket.write_all(&out).await?;
    socket.shutdown().await
}

/// A stream that hands the client's messages on whole, with the text of
/// each `Query` and `Parse` checked to be UTF-8 (see the module doc).
pub struct Utf8Guard<IO> {
    io: IO,
    /// Bytes read from `io` and not yet framed into a message.
    incoming: BytesMut,
    /// Checked bytes for the reader.
    ready: BytesMut,
    /// Whether the next message is the startup packet (which has no type
    /// byte).
    startup: bool,
    /// Bytes of an oversized message still to pass on unchecked.
    unchecked: usize,
    /// Whether `io` has ended.
    eof: bool,
}

impl<IO> Utf8Guard<IO> {
    pub fn new(io: IO) -> Self {
        Utf8Guard {
            io,
            incoming: BytesMut::with_capacity(8192),
            ready: BytesMut::new(),
            startup: true,
            unchecked: 0,
            eof: false,
        }
    }

    /// Moves every complete message of `incoming` to `ready`, checked.
    fn frame(&mut self) {
        loop {
            if self.unchecked > 0 {
                let n = self.unchecked.min(self.incoming.len());
                self.ready.extend_from_slice(&self.incoming.split_to(n));
                self.unchecked -= n;
                if self.unchecked > 0 {
                    return;
                }
            }
            let header = if self.startup { 4 } else { 5 };
            if self.incoming.len() < header {
                return;
            }
            let at = header - 4;
            let length = u32::from_be_bytes([
                self.incoming[at],
                self.incoming[at + 1],
                self.incoming[at + 2],
                self.incoming[at + 3],
            ]) as usize;
            let total = at + length.max(4);
            self.startup = false;
            if total > MAX_CHECKED_MESSAGE {
                self.unchecked = total;
                continue;
            }
            if self.incoming.len() < total {
                self.incoming.reserve(total - self.incoming.len());
                // The startup packet is looked at again when it is whole.
                self.startup = header == 4;
                return;
            }
            let message = self.incoming.split_to(total);
            match message[0] {
                b'Q' if header == 5 => self.put_checked(&message, 5, None),
                b'P' if header == 5 => {
                    // The statement's name, then its text.
                    let name_end = message[5..].iter().position(|b| *b == 0).map(|i| 5 + i + 1);
                    match name_end {
                        Some(start) => self.put_checked(&message, start, Some(&message[..start])),
                        None => self.ready.extend_from_slice(&message),
                    }
                }
                _ => self.ready.extend_from_slice(&message),
            }
        }
    }

    /// Passes on a message whose text (a NUL-terminated string at `start`)
    /// must be UTF-8, replacing the text by the marker if it is not.
    /// `prefix` is what precedes the text after the type and length.
    fn put_checked(&mut self, message: &[u8], start: usize, prefix: Option<&[u8]>) {
        let Some(len) = message[start..].iter().position(|b| *b == 0) else {
            self.ready.extend_from_slice(message);
            return;
        };
        let text = &message[start..start + len];
        let Err(e) = std::str::from_utf8(text) else {
            self.ready.extend_from_slice(message);
            return;
        };
        let bad = &text[e.valid_up_to()..];
        let bad = &bad[..e.error_len().unwrap_or(bad.len()).min(bad.len())];
        let mut marker = String::from(INVALID_UTF8);
        for (i, b) in bad.iter().enumerate() {
            if i > 0 {
                marker.push(' ');
            }
            marker.push_str(&format!("0x{b:02x}"));
        }
        let rest = &message[start + len..];
        let body_prefix = prefix.map(|p| &p[5..]).unwrap_or(&[]);
        let length = 4 + body_prefix.len() + marker.len() + rest.len();
        self.ready.put_u8(message[0]);
        self.ready.put_u32(length as u32);
        self.ready.extend_from_slice(body_prefix);
        self.ready.extend_from_slice(marker.as_bytes());
        self.ready.extend_from_slice(rest);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Utf8Guard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What is left is a partial message: pass it on as it is.
                let n = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming[..n]);
                this.incoming.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.incoming.extend_from_slice(read.filled());
                        this.frame();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Utf8Guard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn guard(input: &[u8]) -> Vec<u8> {
        let mut g = Utf8Guard::new(());
        g.startup = false;
        g.incoming.extend_from_slice(input);
        g.frame();
        g.ready.to_vec()
    }

    #[test]
    fn valid_messages_pass_unchanged() {
        let q = message(b'Q', b"SELECT 'h\xc3\xa9'\0");
        let p = message(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17");
        let all = [q.clone(), p.clone()].concat();
        assert_eq!(guard(&all), all);
        // Split across reads: nothing until the message is whole.
        assert!(guard(&q[..q.len() - 1]).is_empty());
    }

    #[test]
    fn invalid_text_becomes_the_marker() {
        let q = message(b'Q', b"SELECT '\xc3\x28'\0");
        let out = guard(&q);
        let text = std::str::from_utf8(&out[5..out.len() - 1]).unwrap();
        let err = invalid_utf8(text).expect("marker");
        assert_eq!(err.sqlstate(), "22021");
        assert_eq!(
            err.to_string(),
            "invalid byte sequence for encoding \"UTF8\": 0xc3"
        );
        assert_eq!(
            u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
            out.len() - 1
        );
        let p = message(b'P', b"s1\0SELECT '\xff'\0\0\0");
        let out = guard(&p);
        assert_eq!(&out[5..8], b"s1\0");
        assert!(std::str::from_utf8(&out[8..out.len() - 3])
            .unwrap()
            .starts_with(INVALID_UTF8));
        assert_eq!(&out[out.len() - 3..], b"\0\0\0");
    }
}
