//! A publisher that speaks the NATS wire protocol itself, to store in a stream the frames no
//! client library would send (headers async-nats refuses to parse), as anyone allowed to
//! publish on the subject space can.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Header blocks a client library cannot parse, each named by what is wrong with it.
pub const MALFORMED: [(&str, &[u8]); 3] = [
    (
        "invalid UTF-8 in a header value",
        b"NATS/1.0\r\nX-Note: \xff\xfe\r\n\r\n",
    ),
    (
        "a header line without a colon",
        b"NATS/1.0\r\nNo colon on this line\r\n\r\n",
    ),
    ("a bad status line", b"NATS/X\r\n\r\n"),
];

/// Publishes `headers` and `payload` on `subject` (bytes: it need not be UTF-8) over a
/// connection of its own and waits for JetStream's acknowledgement; returns the stream
/// sequence it was stored at.
pub fn publish(nats_url: &str, subject: &[u8], headers: &[u8], payload: &[u8]) -> u64 {
    let address = nats_url.trim_start_matches("nats://");
    let mut socket = TcpStream::connect(address).expect("connect to nats-server");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO "), "not a NATS server: {line}");
    let inbox = "_INBOX.raw_frames";
    let mut frame = Vec::new();
    frame.extend_from_slice(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n",
    );
    frame.extend_from_slice(format!("SUB {inbox} 1\r\n").as_bytes());
    frame.extend_from_slice(b"HPUB ");
    frame.extend_from_slice(subject);
    frame.extend_from_slice(
        format!(
            " {inbox} {} {}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .as_bytes(),
    );
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\nPING\r\n");
    socket.write_all(&frame).unwrap();
    // The acknowledgement comes as a MSG on the inbox, before or after the PONG.
    let mut ack = None;
    let mut ponged = false;
    while ack.is_none() || !ponged {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "server closed");
        let text = line.trim_end();
        if text == "PONG" {
            ponged = true;
        } else if text == "PING" {
            socket.write_all(b"PONG\r\n").unwrap();
        } else if let Some(rest) = text.strip_prefix("MSG ") {
            let size: usize = rest.rsplit(' ').next().unwrap().parse().unwrap();
            let mut body = vec![0; size + 2];
            reader.read_exact(&mut body).unwrap();
            body.truncate(size);
            ack = Some(body);
        } else {
            assert!(!text.starts_with("-ERR"), "server refused: {text}");
        }
    }
    let ack: serde_json::Value = serde_json::from_slice(&ack.unwrap()).unwrap();
    ack["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("not stored: {ack}"))
}
