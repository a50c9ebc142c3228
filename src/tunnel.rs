//! The CONNECT relay: bytes both ways until both sides have closed.
//!
//! After `HTTP/1.1 200 Connection established`, each direction is pumped on
//! its own: when one side finishes sending (EOF), modgate half-closes the
//! other side's write direction and keeps relaying the opposite direction.
//! The tunnel ends when both directions are done, on an error, or when no
//! byte has moved for `timeouts.idle`.
//!
//! A relay buffer exists only while bytes are flowing: an idle tunnel holds
//! two sockets and a small task, no buffers.

use std::io;
use std::time::Duration;

use crate::access::Counter;
use crate::idle::Activity;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

/// Bytes moved per read while a direction is busy.
const RELAY_BUF: usize = 64 * 1024;

/// How a tunnel ended.
#[derive(Debug)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// No bytes moved for the idle timeout.
    Idle,
    /// A socket failed.
    Failed(io::Error),
}

/// Relays between `client` and `upstream` until the tunnel ends, counting
/// client-to-upstream bytes in `up` and upstream-to-client bytes in `down`.
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    up: &Counter,
    down: &Counter,
) -> Ended {
    let activity = Activity::new();
    let (client_r, client_w) = client.split();
    let (upstream_r, upstream_w) = upstream.split();
    let both = async {
        tokio::try_join!(
            pump(&client_r, upstream_w, &activity, up),
            pump(&upstream_r, client_w, &activity, down),
        )
    };
    tokio::select! {
        result = both => match result {
            Ok(_) => Ended::Closed,
            Err(e) => Ended::Failed(e),
        },
        () = activity.idle_for(idle) => Ended::Idle,
    }
}

/// Copies `src` to `dst` until EOF, then half-closes `dst`.
async fn pump(
    src: &ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    activity: &Activity,
    count: &Counter,
) -> io::Result<()> {
    loop {
        src.readable().await?;
        // Allocated on demand and freed once the socket is drained, so idle
        // tunnels cost no buffer memory.
        let mut buf = Vec::with_capacity(RELAY_BUF);
        loop {
            buf.clear();
            match src.try_read_buf(&mut buf) {
                Ok(0) => {
                    dst.shutdown().await?;
                    return Ok(());
                }
                Ok(n) => {
                    dst.write_all(&buf).await?;
                    count.add(n as u64);
                    activity.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}
