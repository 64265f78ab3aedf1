//! What async-nats refuses in a frame it receives, checked as it parses one
//! (`Connection::try_read_op` in 0.52, the `MSG` and `HMSG` arms). Such a frame does not fail
//! its message: the client drops the connection it came on. nats-server stores and delivers it
//! all the same, so a consumer can only recognise it from the stored copy, which the stream's
//! message API returns in JSON (headers in base64), and set it aside, since it can never be
//! received. Kept in step with the client: a check that passes a frame the client refuses
//! leaves the consumer in a reconnect loop, which it then reports.

use std::str::FromStr;

use async_nats::{HeaderName, StatusCode};

/// Why a stored message can never reach a subscriber through async-nats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unreadable {
    /// Its subject has a byte sequence that is not UTF-8 (JSON carries those as U+FFFD, so a
    /// subject with a real U+FFFD is taken for one).
    #[error("its subject is not UTF-8")]
    Subject,
    /// Its header block is not UTF-8.
    #[error("its header block is not UTF-8")]
    HeaderEncoding,
    /// Its header block is empty.
    #[error("its header block has no version line")]
    NoVersionLine,
    /// Its first header line is not `NATS/1.0`, alone or with a status.
    #[error("its header version line does not begin with `NATS/1.0`")]
    Version,
    /// Its status is not three digits from 100.
    #[error("its header status is not a three-digit code")]
    Status,
    /// A header line has no colon.
    #[error("a header line has no colon")]
    NoColon,
    /// A header name has a character that is not visible ASCII.
    #[error("a header name is not visible ASCII")]
    Name,
}

/// Whether async-nats can receive a message with this subject and header block; the reason
/// never quotes the frame, which may carry personal data.
pub(super) fn check(subject: &str, header: Option<&[u8]>) -> Result<(), Unreadable> {
    if subject.contains(char::REPLACEMENT_CHARACTER) {
        return Err(Unreadable::Subject);
    }
    let Some(header) = header else {
        return Ok(());
    };
    let text = std::str::from_utf8(header).map_err(|_| Unreadable::HeaderEncoding)?;
    let mut lines = text.lines().peekable();
    let version = lines.next().ok_or(Unreadable::NoVersionLine)?;
    let rest = version
        .strip_prefix("NATS/1.0")
        .map(str::trim)
        .ok_or(Unreadable::Version)?;
    let status = rest
        .split_once(' ')
        .map_or(rest, |(status, _)| status.trim());
    if !status.is_empty() && StatusCode::from_str(status).is_err() {
        return Err(Unreadable::Status);
    }
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (name, _) = line.split_once(':').ok_or(Unreadable::NoColon)?;
        HeaderName::from_str(name).map_err(|_| Unreadable::Name)?;
        // A value continued on lines that begin with white space.
        while lines
            .next_if(|line| line.starts_with(char::is_whitespace))
            .is_some()
        {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Unreadable, check};

    #[test]
    fn what_the_client_parses_passes() {
        for header in [
            &b"NATS/1.0\r\n\r\n"[..],
            b"NATS/1.0\r\nNats-Msg-Id: 1\r\nce-type: quiz\r\n\r\n",
            b"NATS/1.0 404 No Messages\r\n\r\n",
            b"NATS/1.0 100\r\n\r\n",
            b"NATS/1.0\r\nLong: first\r\n second\r\n\r\n",
            // A carriage return inside a value: 0.51 panicked on it, 0.52 makes it a space.
            b"NATS/1.0\r\nNote: a\rb\r\n\r\n",
        ] {
            assert_eq!(check("p.quiz", Some(header)), Ok(()), "{header:?}");
        }
        assert_eq!(check("p.quiz", None), Ok(()));
    }

    #[test]
    fn what_drops_the_connection_is_named() {
        for (header, why) in [
            (
                &b"NATS/1.0\r\nNote: \xff\xfe\r\n\r\n"[..],
                Unreadable::HeaderEncoding,
            ),
            (b"", Unreadable::NoVersionLine),
            (b"NATS/X\r\n\r\n", Unreadable::Version),
            (b"HTTP/1.1 200\r\n\r\n", Unreadable::Version),
            (b"NATS/1.0 abc\r\n\r\n", Unreadable::Status),
            (b"NATS/1.0 099\r\n\r\n", Unreadable::Status),
            (b"NATS/1.0\r\nNo colon here\r\n\r\n", Unreadable::NoColon),
            (b"NATS/1.0\r\nBad Name: x\r\n\r\n", Unreadable::Name),
        ] {
            assert_eq!(check("p.quiz", Some(header)), Err(why), "{header:?}");
        }
        assert_eq!(
            check("p.quiz.\u{fffd}", Some(b"NATS/1.0\r\n\r\n")),
            Err(Unreadable::Subject)
        );
    }
}
