//! UDP heartbeats on the forward port: any datagram is answered with one `0x00` byte,
//! as Fluentd's in_forward does (reference section 7).

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Answers heartbeats until shutdown.
pub async fn serve(socket: UdpSocket, shutdown: CancellationToken) {
    let mut buf = [0u8; 64];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        match received {
            Ok((_, peer)) => {
                if let Err(e) = socket.send_to(&[0x00], peer).await {
                    tracing::debug!(%peer, "udp heartbeat reply failed: {e}");
                }
            }
            Err(e) => tracing::debug!("udp heartbeat receive failed: {e}"),
        }
    }
}
